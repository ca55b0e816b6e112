"""What our lm-eval models share: the method record in the results file and a `--use_cache` table of their own."""

from __future__ import annotations

from typing import Any

from unlock_eval.errors import ConfigError
from unlock_eval.method import RECORD_KEY, MethodRecord
from unlock_eval.models import ResolvedModel, resolve_model


def resolve_role(role: str, spec: str, revision: str | None, cache_dir: str | None, **kwargs: Any) -> ResolvedModel:
    """resolve_model, with errors naming the argument (target=, source=, source_locked=) they came from."""
    try:
        return resolve_model(spec, revision=revision, cache_dir=cache_dir, **kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{role}: {exc}") from None


class RecordedRun:
    """Mixed into an HFLM subclass that sets `run_record` (MethodRecord) and `cache_table` in its __init__."""

    run_record: MethodRecord
    cache_table: str
    cache_file: str | None = None

    def set_cache_hook(self, cache_hook) -> None:
        """`--use_cache` keys by request only: give each configuration its own table in the cache file, so its
        answers are never served to a plain run (or the other way round)."""
        db = getattr(cache_hook, "dbdict", None)
        self.cache_file = getattr(db, "filename", None)  # lm-eval's --use_cache file of this process, if any
        if db is not None:
            db.conn.execute(f'CREATE TABLE IF NOT EXISTS "{self.cache_table}" (key TEXT PRIMARY KEY, value BLOB)')
            db.conn.commit()
            db.tablename = self.cache_table
        super().set_cache_hook(cache_hook)

    def get_model_info(self) -> dict:
        info = super().get_model_info()
        info[RECORD_KEY] = self.run_record.to_dict()
        return info
