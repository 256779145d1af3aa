"""Ops monitoring: the figures operators watch (:mod:`.figures`), the SLOs they are held to (:mod:`.slo`),
their Prometheus exposition (:mod:`.metrics`) and the alert life cycle (:mod:`.alerts`).

:func:`marketkeeper.services.status.ops_status` computes the figures once; the CLI, the DAG, the UI page,
the JSON and the metrics endpoints all show that one document.
"""

from __future__ import annotations

from marketkeeper.ops.figures import BackupFigures, Breach, OpsStatus, SeriesFigures, StoreHealth
from marketkeeper.ops.slo import Slos

__all__ = ["BackupFigures", "Breach", "OpsStatus", "SeriesFigures", "Slos", "StoreHealth"]
