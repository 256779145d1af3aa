"""The backup DAGs' store choices are the service's stores (spelled out so that parsing imports no backup tool)."""

from __future__ import annotations

from marketkeeper.airflow.backups import STORE_NAMES, stores_param
from marketkeeper.services.backups import STORES


def test_the_form_offers_exactly_the_stores_the_service_backs_up() -> None:
    assert STORE_NAMES == STORES
    param = stores_param("drill")
    assert param.value == []
    assert param.schema["items"]["enum"] == list(STORES)
    assert param.description is not None and "the stores to drill" in param.description
