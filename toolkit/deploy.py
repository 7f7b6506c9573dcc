"""An artifact written again with what its validation decided in its metadata: `rtk run`'s deploy stage.

Where `validate.fast_decode` passed on the deployed artifact, the run writes that artifact once more under
`<run>/deploy/` with the check in `ModelMeta.extra["decode"]` (toolkit.artifact.DECODE_RECORD), so `rtk predict`, `rtk bench
--images` and `rtk validate` take the fast JPEG decode by default for it, and only for it. The graph and weights are
the validated ones, unchanged; only the metadata differs (its provenance names the parent file and its sha256).
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from toolkit.artifact import DECODE_RECORD, ModelMeta
from toolkit.backends import read_meta
from toolkit.errors import RtkError
from toolkit.content import content_sha256
from toolkit.io import artifact_files, atomic_outputs, json_text
from toolkit.photos import FastDecodeCheck

DEPLOYED = (".onnx", ".xml", ".engine", ".plan")     # an artifact's main file; an IR's .bin and an engine's sidecar
                                                    # go with it (toolkit.io.artifact_files)


def with_fast_decode(source: Path, output: Path, check: FastDecodeCheck, *, data: str) -> list[Path]:
    """Write `source` to `output` (same format) with `check`, judged on the images in `data`, as its decode
    record; returns the files written. A check that does not pass is refused."""
    if not check.deployable:
        raise RtkError(f"{source}: the fast decode did not pass its check ({check}); deploy with the exact decode")
    meta = read_meta(source).derived("deploy", parent=source, decode="fast")

    def write(record: dict) -> list[Path]:
        return write_with_meta(Path(source), Path(output), meta.model_copy(
            update={"extra": {**meta.extra, DECODE_RECORD: record}}))

    record = {**check.model_dump(), "data": data}
    write(record)     # once to learn the written content's digest (re-serialising may reorder bytes), then with it
    record["content_sha256"] = content_sha256(output)
    written = write(record)
    if content_sha256(output) != record["content_sha256"]:     # the record must name what was written
        for f in written:
            f.unlink(missing_ok=True)
        raise RtkError(f"{output}: writing the deploy copy changed its content between two writes; deploy again")
    return written


def write_with_meta(source: Path, output: Path, meta: ModelMeta) -> list[Path]:
    """`source` (.onnx, .xml + .bin, .engine/.plan + sidecar) written to `output` with `meta` as its rtk
    metadata, atomically."""
    suffix = source.suffix.lower()
    if suffix == ".onnx":
        from toolkit.onnx_file import load_onnx, write_onnx_meta
        import onnx

        model = load_onnx(source, load_external_data=True)
        write_onnx_meta(model, meta)
        with atomic_outputs(output, make_folder=True) as (tmp,):
            onnx.save(model, str(tmp))
        return [output]
    if suffix == ".xml":
        from toolkit.backends.openvino.builder import _save_atomic
        from toolkit.backends.openvino.loader import META_PATH, read_model

        model = read_model(source)
        model.set_rt_info(meta.to_json(), META_PATH)
        return _save_atomic(model, output, compress_to_fp16=False)
    if suffix in (".engine", ".plan"):
        from toolkit.backends.tensorrt.sidecar import read_sidecar, sidecar_path

        side = {**read_sidecar(source), "meta": meta.json_dict()}
        with atomic_outputs(output, sidecar_path(output), make_folder=True) as (plan, tmp_side):
            shutil.copyfile(source, plan)
            tmp_side.write_text(json_text(side))
        return [output, sidecar_path(output)]
    raise RtkError(f"{source}: only an .onnx, .xml or .engine artifact is deployed this way, not "
                   f"{suffix or 'a file without an extension'}")


def clear_deploy(folder: Path, *, keep: list[Path]) -> None:
    """Remove from the run's deploy/ the copies an earlier run deployed and this one does not: such a copy would
    still claim a check that no longer holds (another model, or validate.fast_decode since turned off). Only rtk's
    own deploy copies go (an artifact whose last provenance step is `deploy`, with its companion files); anything
    else in the folder stays, and so does the folder unless it is left empty."""
    if not folder.is_dir() or folder.is_symlink():
        return
    for f in sorted(folder.iterdir()):
        if f in keep or not f.is_file() or f.suffix.lower() not in DEPLOYED:
            continue
        try:
            history = read_meta(f).provenance.get("history") or [{}]
        except RtkError:
            continue
        if isinstance(history[-1], dict) and history[-1].get("step") == "deploy":
            for part in artifact_files(f):
                part.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        folder.rmdir()          # only when nothing is left in it


def check_deploy_folder(root: Path) -> None:
    """Refuse a run folder whose deploy/ cannot take a deploy copy (validate.fast_decode): checked before the first
    stage too, so nothing runs for an hour to fail there."""
    folder = root / "deploy"
    if folder.is_symlink():
        raise RtkError(f"{folder} is a symbolic link; remove it: rtk writes the deploy copy into a folder of the run")
    if folder.exists() and not folder.is_dir():
        raise RtkError(f"{folder} is a file; move it away: rtk writes the deploy copy into this folder of the run")
    clashes = [f for f in sorted(folder.glob("*")) if f.is_dir() and f.suffix.lower() in (*DEPLOYED, ".bin")]
    if clashes:
        raise RtkError(f"{clashes[0]} is a folder; move it away: rtk writes deploy copies in {folder}")
