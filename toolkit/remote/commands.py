"""The runtime commands on a device: each command's settings model becomes the device rtk's flags by the one path
that turns settings into flags (`toolkit.cli.flags.to_argv`, minus the fields that say where to run), its inputs are
marked for copying (artifacts and images by sha256, a data folder by its tree hash), and the device's JSON comes
back as the local result type with its `device` block.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from toolkit.remote.cache import DevicePath, Folder
from toolkit.remote.channel import Device, RemoteError
from toolkit.remote.run import remote_run, unreadable
from toolkit.settings import REMOTE_FIELDS, BenchSettings, Gates, PredictSettings, RemoteSettings, ValidateSettings

Say = Callable[[str], None] | None
VALIDATE_GATES = ("max_drop_pt", "min_agreement_pct")     # the gates `rtk validate` has flags for


def _read(model, data, done):
    """The device's JSON as this rtk's result type; a result in another shape (another rtk version) is one line."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except (ValidationError, TypeError):
        raise unreadable(done.device) from None


def device_of(settings: RemoteSettings, *, label: str = "") -> Device:
    """The device a command's settings name (`remote`, `remote_rtk`)."""
    return Device(dest=settings.remote, rtk=settings.remote_rtk or "rtk", label=label)


def flags_of(settings, *, exclude: tuple[str, ...] = ()) -> list[str]:
    """The device rtk's flags for `settings`: every field but where to run."""
    from toolkit.cli.flags import FLAG_NAMES, to_argv

    return to_argv(settings, flags=FLAG_NAMES, exclude=REMOTE_FIELDS + exclude)


def bench_on_device(path: Path, *, target: str | None, settings: BenchSettings, device: Device | None = None,
                    say: Say = None):
    """`rtk bench` on the device; a BenchResult with the device block."""
    from toolkit.bench import BenchResult

    from toolkit.remote.cache import upload_of

    device = device or device_of(settings)
    done = remote_run(device, ["bench", Path(path), *(["--target", target] if target else []), *flags_of(settings)],
                      say=say)
    result = _read(BenchResult, done.as_json(), done)
    upload = upload_of(Path(path))
    if result.sha256 != upload.files[-1][2]:     # the device hashed the file it timed
        raise RemoteError(f"{device.name}: its cached copy of {Path(path).name} differs from this file (changed on "
                          f"the device); remove {device.cache}/{upload.folder} there and retry")
    return result


def validate_on_device(artifacts: Sequence[str | Path], data: str | Path | None, *, reference: str | Path | None,
                       targets: Sequence[str | None] | None, settings: ValidateSettings, gates: Gates,
                       device: Device | None = None, say: Say = None):
    """`rtk validate` on the device, on a copy of `data` or on `settings.remote_data` (a folder already there); a
    ValidationReport with the device block (its `passed` False when a gate failed there)."""
    from toolkit.backends import DEFAULT_TARGET
    from toolkit.validate import ValidationReport

    if (data is None) == (settings.remote_data is None):
        raise RemoteError("give the labeled images as --data FOLDER (copied to the device) or --remote-data PATH "
                          "(a folder already on the device), one of them")
    paths = [Path(a) for a in artifacts]
    given = list(targets or [])
    if given and len(given) != len(paths):
        raise RemoteError(f"{len(given)} targets for {len(paths)} artifacts; give one --target or one per artifact")
    chosen = [t or DEFAULT_TARGET.get(p.suffix.lower(), "") for p, t in zip(paths, given)] if any(given) else []
    argv = ["validate", *paths, "--data", DevicePath(settings.remote_data) if data is None else Folder(Path(data)),
            *(["--reference", Path(reference)] if reference is not None else []),
            *[x for t in chosen for x in ("--target", t)],
            *flags_of(gates, exclude=tuple(f for f in Gates.model_fields if f not in VALIDATE_GATES)),
            *flags_of(settings)]
    done = remote_run(device or device_of(settings), argv, say=say)
    report = _read(ValidationReport, done.as_json(), done)
    if data is not None:     # a broken symlink in it was not copied: skipped, as a local run counts it
        from toolkit.remote.cache import folder_upload

        dropped = folder_upload(Path(data)).dropped
        report.skipped += len(dropped)
        report.skipped_files = sorted([*report.skipped_files, *dropped])
    return report


def predict_on_device(images: Sequence[str | Path], model: str | Path, *, target: str | None,
                      settings: PredictSettings, say: Say = None):
    """`rtk predict` on the device (each image copied by sha256); every Prediction carries the device block."""
    from toolkit.predict import Prediction

    done = remote_run(device_of(settings), ["predict", *[Path(i) for i in images], "--model", Path(model),
                                            *(["--target", target] if target else []), *flags_of(settings)], say=say)
    found = done.result.get("predictions")      # {predictions, phases}
    if not isinstance(found, list) or not all(isinstance(p, dict) for p in found):
        raise unreadable(done.device)
    return [_read(Prediction, {**p, "device": done.device}, done) for p in found]


def doctor_on_device(settings: RemoteSettings, *, say: Say = None):
    """`rtk doctor` on the device: its report with the device block."""
    from toolkit.doctor import DoctorReport

    done = remote_run(device_of(settings), ["doctor"], say=say)
    return _read(DoctorReport, done.as_json(), done)
