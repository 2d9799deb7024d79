"""The store contract between the trainer (writes) and the service (reads): layout, manifest, atomic
writes. Imports no torch: reading a store needs none."""
from shared.store.layout import (
    CLASSES,
    CLASSIFIER,
    DISCRIMINATOR,
    ENCODER,
    FORMS,
    GENERATOR,
    HISTORY_CSV,
    MANIFEST,
    NAME_PATTERN,
    NETWORKS,
    REPORT_DIR,
    InvalidName,
    NotFound,
    StoreError,
    StoreWriteFailed,
    form_file,
    generator_file,
    validate_name,
)
from shared.store.manifest import Manifest, ManifestDraft, Metrics
from shared.store.semantics import ClassBoundary, ClassSemantics
from shared.store.store import Damage, DamagedVersion, Listing, Store, Version, sha256_file, utc_now_iso

__all__ = [
    "CLASSES", "CLASSIFIER", "ClassBoundary", "Damage", "DamagedVersion", "Listing", "ClassSemantics", "DISCRIMINATOR", "ENCODER", "FORMS", "GENERATOR", "HISTORY_CSV", "MANIFEST", "NAME_PATTERN", "NETWORKS", "REPORT_DIR", "InvalidName", "Manifest",
    "ManifestDraft", "Metrics", "NotFound", "Store", "StoreError", "StoreWriteFailed", "Version", "sha256_file", "utc_now_iso",
    "form_file", "generator_file", "validate_name",
]
