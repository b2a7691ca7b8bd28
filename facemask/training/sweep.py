"""Hyperparameter sweeps with Optuna: TPE sampling, pruning on the per-epoch validation metric, each trial a
normal tracked run. The study lives in a storage that several workers can share and that resumes when re-run."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

from facemask.config import Config, config_from_dict, parse_overrides
from facemask.errors import ConfigError, FacemaskError
from facemask.io import atomic_write_text

log = logging.getLogger("facemask")
KINDS = ("float", "int", "categorical")


def read_space(path: str | Path) -> dict[str, dict[str, Any]]:
    """``{config.key: {type: float|int|categorical, low, high, log, step, choices}}`` from YAML, checked."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"search space {path} does not exist")
    space = yaml.safe_load(path.read_text()) or {}
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"search space {path} must map config keys to ranges")
    for key, spec in space.items():
        kind = spec.get("type") if isinstance(spec, dict) else None
        if kind not in KINDS:
            raise ConfigError(f"search space {path}: {key} needs type: one of {', '.join(KINDS)}")
        if kind == "categorical" and not spec.get("choices"):
            raise ConfigError(f"search space {path}: {key} needs choices")
        if kind != "categorical" and ("low" not in spec or "high" not in spec):
            raise ConfigError(f"search space {path}: {key} needs low and high")
    return space


def storage_for(url: str | None, study: str):
    """Default: a SQLite file ``<study>.db``; ``journal:PATH`` for Optuna's journal file; any RDB URL as is."""
    import optuna

    if not url:
        return f"sqlite:///{Path(f'{study}.db').resolve()}"
    if url.startswith("journal:"):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        return JournalStorage(JournalFileBackend(url[len("journal:"):]))
    return optuna.storages.RDBStorage(url) if "://" in url else url


def _suggest(trial, key: str, spec: dict[str, Any]) -> Any:
    if spec["type"] == "float":
        return trial.suggest_float(key, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log", False)),
                                   step=spec.get("step"))
    if spec["type"] == "int":
        return trial.suggest_int(key, int(spec["low"]), int(spec["high"]), step=int(spec.get("step", 1)),
                                 log=bool(spec.get("log", False)))
    return trial.suggest_categorical(key, list(spec["choices"]))


def _apply(base: Config, params: dict[str, Any]) -> Config:
    data = base.to_dict()

    def merge(node, update):
        for k, v in update.items():
            if isinstance(v, dict):
                merge(node.setdefault(k, {}), v)
            else:
                node[k] = v
    merge(data, parse_overrides([f"{k}={yaml.safe_dump(v, default_flow_style=True).strip()}"
                                 for k, v in params.items()]))
    return config_from_dict(data)


def sweep(base: Config, space_path: str | Path, trials: int, study_name: str = "facemask-sweep",
          storage: str | None = None, seed: int = 0, out: str | Path | None = None) -> dict[str, Any]:
    """Run ``trials`` more trials of the study; write the best config as YAML; return a summary."""
    import optuna

    from facemask.training.trainer import check_config, fit

    space = read_space(space_path)
    for key in space:  # every key must be a real option, and every choice a valid one
        spec = space[key]
        samples = spec["choices"] if spec["type"] == "categorical" else [spec["low"], spec["high"]]
        for value in samples:
            check_config(_apply(base, {key: value}))
    metric = base.train.select_metric
    direction = "maximize" if base.train.select_mode == "max" else "minimize"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=study_name, storage=storage_for(storage, study_name),
                                load_if_exists=True, direction=direction,
                                sampler=optuna.samplers.TPESampler(seed=seed + len_trials(study_name, storage)),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1))

    def objective(trial: optuna.Trial) -> float:
        params = {key: _suggest(trial, key, spec) for key, spec in space.items()}
        cfg = _apply(base, params)
        cfg.train.name = f"{study_name}-t{trial.number}"
        best = {"value": None}

        def report(row: dict) -> None:
            value = float(row[metric])
            if best["value"] is None or (value > best["value"]) == (direction == "maximize"):
                best["value"] = value
            trial.report(value, int(row["epoch"]))
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {row['epoch']}")

        run_dir = fit(cfg, on_epoch=report)
        trial.set_user_attr("run_dir", str(run_dir))
        log.info("trial %d: %s = %.4f (%s)", trial.number, metric, best["value"], params)
        return best["value"]

    study.optimize(objective, n_trials=trials, catch=())
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        raise FacemaskError(f"study {study_name} has no completed trial yet")
    best_cfg = _apply(base, study.best_trial.params)
    best_cfg.train.name = f"{study_name}-best"
    out = Path(out or f"{study_name}-best.yaml")
    atomic_write_text(out, yaml.safe_dump(best_cfg.to_dict(), sort_keys=False))
    return {"study": study_name, "trials": len(study.trials), "completed": len(completed),
            "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
            "best_value": study.best_value, "best_params": study.best_trial.params, "best_config": str(out),
            "best_run": study.best_trial.user_attrs.get("run_dir")}


def len_trials(study_name: str, storage: str | None) -> int:
    """How many trials the study already has (so a re-run's sampler seed differs from the first run's)."""
    import optuna

    try:
        return len(optuna.load_study(study_name=study_name, storage=storage_for(storage, study_name)).trials)
    except KeyError:
        return 0

