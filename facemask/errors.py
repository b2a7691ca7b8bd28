"""Exception types for every problem a user can fix (bad data, bad config, bad file)."""

import signal
from pathlib import Path


class FacemaskError(Exception):
    """A user-facing error; the CLI prints its message on one line and exits with status 2."""


class ConfigError(FacemaskError):
    """An unknown option, a value of the wrong type or an unknown registry name."""


class DataError(FacemaskError):
    """A dataset that does not follow the competition layout, or an unreadable image."""


class TrainingInterrupted(FacemaskError):
    """A signal stopped training after a resumable checkpoint was written."""

    def __init__(self, run_dir: Path, signum: int, epoch: int, step: int):
        self.run_dir, self.signum = run_dir, signum
        super().__init__(f"interrupted by {signal.Signals(signum).name} after {step} steps of epoch {epoch + 1}; "
                         f"resumable checkpoint {run_dir / 'last.pt'}; continue with: "
                         f"facemask train --resume {run_dir}")
