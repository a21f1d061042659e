"""Latency of architectures on one device profile: prediction from a per-profile table of unit
entries plus a fitted correction, the table's build, fit and validation, and remote devices.

    model = model_for("torch", threads=1)       # this machine's table (the per-user cache)
    model.predict(space, arch)                   # Prediction(ms, low_ms, high_ms, ...)

Modules: `model` (LatencyModel: predict, fill, fit), `timing` (units and
networks timed at the table's speed level), `anchors` (units already in the
table, timed beside each new group), `fit` (correction choice,
symptoms, margin, agreement), `validation`, `tables` (cache folder, which
table a machine uses), `build` (`nas lut build`), `arch` (one architecture's
figures for `nas arch stats`), `remote`, `remote_import` and `remote_files`
(tables for devices this machine cannot run).
"""
from __future__ import annotations

from nas.latency.arch import ArchLatency, arch_latency
from nas.latency.build import Bars, Say, TableBuild, build_table, no_bars
from nas.latency.fit import (DEFAULT_MARGIN, FIT_SEED_OFFSET, SYMPTOM, Z90, agreement, choose_correction, describe,
                             fit_archs, fitted_correction, margin, margin_note, recalibrated, symptom)
from nas.latency.model import LatencyModel, Prediction
from nas.latency.remote import SAVE_EVERY, OpsExport, export_ops, sampled_units
from nas.latency.remote_files import (KEY_METADATA, MANIFEST, MANIFEST_COLUMNS, OPS, README, RESULT_COLUMNS, TEMPLATE,
                                      RemoteError, read_manifest)
from nas.latency.remote_import import import_results, remote_profile
from nas.latency.tables import (ENV_LUT_DIR, TableInfo, default_table_dir, default_table_path, model_for, open_table,
                                table_info)
from nas.latency.timing import (BUSY_TOLERANCE, GROUP_TRIES, NETWORK_GROUP, NETWORK_MEASURE, SHUFFLE_SEED,
                                STATE_TOLERANCE, UNIT_GROUP, UNIT_MEASURE, MissingEntryError, TableTimer)
from nas.latency.validation import validate, validate_table

__all__ = [
    # prediction and measurement (formerly nas/latency.py)
    "BUSY_TOLERANCE", "DEFAULT_MARGIN", "ENV_LUT_DIR", "FIT_SEED_OFFSET", "GROUP_TRIES", "NETWORK_GROUP",
    "NETWORK_MEASURE", "SHUFFLE_SEED", "STATE_TOLERANCE", "SYMPTOM", "UNIT_GROUP", "UNIT_MEASURE", "Z90",
    "LatencyModel", "MissingEntryError", "Prediction", "choose_correction", "default_table_dir",
    "default_table_path", "fit_archs", "model_for", "open_table", "symptom", "validate",
    # remote devices (formerly nas/remote.py)
    "KEY_METADATA", "MANIFEST", "MANIFEST_COLUMNS", "OPS", "README", "RESULT_COLUMNS", "SAVE_EVERY", "TEMPLATE",
    "OpsExport", "RemoteError", "export_ops", "import_results", "read_manifest", "remote_profile", "sampled_units",
    # new homes: the correction's statistics, the table build, one architecture's figures
    "ArchLatency", "Bars", "Say", "TableBuild", "TableInfo", "TableTimer", "agreement", "arch_latency", "build_table",
    "describe", "fitted_correction", "margin", "margin_note", "no_bars", "recalibrated", "table_info", "validate_table",
]
