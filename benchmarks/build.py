"""Make every artifact the table compares, for the latency model (L) and the trained accuracy model (A).

Each step is one stage in its own process (see stages.py); its wall time and peak memory are recorded.
A missing or failed stage leaves its rows "not available: <reason>" and the rest of the run goes on.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

from benchmarks.rows import BY_KEY, ROWS
from benchmarks.settings import Settings
from benchmarks.stages import run_stage

Say = Callable[[str], None]


def _here(name: str, args: dict[str, Any]) -> dict[str, Any]:
    """Run a stage in this process (smoke mode): no per-stage peak memory, but no interpreter start-up either."""
    import resource
    import time

    from benchmarks.stages import STAGES

    t0 = time.perf_counter()
    try:
        out: dict[str, Any] = {"ok": True, "facts": STAGES[name](**args)}
    except ModuleNotFoundError as exc:
        out = {"ok": False, "reason": f"not available: {exc}"}
    except Exception as exc:
        out = {"ok": False, "reason": f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:250] if str(exc) else ''}"}
    out["seconds"] = out["process_seconds"] = time.perf_counter() - t0
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["peak_scope"] = "run so far"
    return out


class Builder:
    def __init__(self, *, settings: Settings, work: Path, cache: Path, say: Say = print):
        self.s, self.work, self.cache, self.say = settings, work, cache, say
        self.stages: list[dict[str, Any]] = []
        self.missing: dict[tuple[str, str], str] = {}    # (model, row key) -> reason
        self.picked_ratio: float | None = None            # by the latency-targeted search on the latency model

    def step(self, label: str, model: str, name: str, args: dict[str, Any], *, kind: str = "") -> dict[str, Any]:
        self.say(f"stage {label} ({model})")
        if self.s.in_process:
            out = _here(name, args)
        else:
            out = run_stage(name, args, self.work / "logs" / model / label)
        out.update(stage=label, model=model, kind=kind or name)
        self.stages.append(out)
        if not out["ok"]:
            self.say(f"  {label}: {out['reason']}")
        return out

    def mark(self, model: str, key: str, out: dict[str, Any]) -> None:
        if not out["ok"]:
            self.missing[(model, key)] = out["reason"]

    def trained(self) -> tuple[Path, Path, dict[str, Any]] | None:
        """The accuracy model: synthetic set + rtk finetune from scratch, cached by the settings' hash."""
        s = self.s
        folder = self.cache / f"trained-{s.mode}-{s.training_key()}"
        data, ckpt = folder / "data", folder / "model.pt"
        facts_file = folder / "train.out.json"
        if ckpt.is_file() and facts_file.is_file():
            self.say(f"stage train: cached {ckpt}")
            import json

            out = json.loads(facts_file.read_text()) | {"cached": True}
            out.update(stage="train", model="A", kind="train")
            self.stages.append(out)
            return data, ckpt, out
        folder.mkdir(parents=True, exist_ok=True)
        out = self.step("train", "A", "synth_train", dict(
            data=str(data), ckpt=str(ckpt), classes=s.synth_classes, per_class=s.synth_per_class,
            val_per_class=s.synth_val_per_class, size=s.synth_size, train_size=s.train_size, epochs=s.train_epochs, batch_size=s.train_batch,
            seed=s.seed))
        if not out["ok"]:
            return None
        import json

        facts_file.write_text(json.dumps(out))
        return data, ckpt, out

    def test_split(self, data: Path) -> Path:
        """The held-out test split the accuracy table scores, drawn once beside the cached training data: the
        synthetic classes from a random stream of their own (the split id after `toolkit.synth`'s train and val),
        so no image of it chose an epoch, set a scale or picked a ratio."""
        from toolkit.io import fresh_temp_name
        from toolkit.synth import SPLITS, draw_split

        s = self.s
        final = data.parent / f"test-{s.test_per_class}"
        if final.is_dir():
            return final
        self.say(f"drawing the test split: {s.synth_classes} x {s.test_per_class} images")
        tmp = fresh_temp_name(data.parent, ".test-")
        try:
            tmp.mkdir()
            for _ in draw_split(tmp, s.synth_classes, s.test_per_class, split_id=len(SPLITS), size=s.synth_size,
                                seed=s.seed):
                pass
            tmp.rename(final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return final

    def subset(self, model: str) -> int:
        return self.s.latency_subset if model == "L" else self.s.subset

    def variants(self, model: str, folder: Path, calib: Path, *, val: Path | None) -> None:
        """OpenVINO FP32, rtk INT8 on both CPU targets, and the two defaults-based alternatives."""
        onnx, s, n = str(folder / "model.onnx"), self.s, self.subset(model)
        if s.wants("ov_fp32"):
            self.mark(model, "ov_fp32", self.step("compile", model, "compile_openvino",
                                                  dict(source=onnx, output=str(folder / "model_fp32.xml"))))
        if s.wants("ov_bf16"):
            from toolkit.backends.openvino.precision import bf16_refusal

            why = bf16_refusal()
            if why:
                self.missing[(model, "ov_bf16")] = f"not available: {why}"
            else:
                self.mark(model, "ov_bf16", self.step("compile bf16", model, "compile_openvino",
                                                      dict(source=onnx, output=str(folder / "model_bf16.xml"),
                                                           precision="bf16")))
        for key, target in (("rtk_int8_ort", "onnxruntime"), ("rtk_int8_ov", "openvino")):
            if not s.wants(key):
                continue
            art = folder / BY_KEY[key].artifact
            out = self.step(f"calibrate {n} ({target})", model, "rtk_int8",
                            dict(source=onnx, output=str(art), calib=str(calib), target=target,
                                 subset=n, seed=s.seed), kind="calibration")
            self._adopt(out, art)
            self.mark(model, key, out)
        if s.wants("ort_qs_defaults"):
            self.mark(model, "ort_qs_defaults", self.step(
                "ORT quantize_static defaults", model, "ort_quantize_static",
                dict(source=onnx, output=str(folder / "ort_qs_defaults.onnx"), calib=str(calib), subset=n)))
        if s.wants("nncf_defaults"):
            self.mark(model, "nncf_defaults", self.step(
                "nncf.quantize defaults", model, "nncf_defaults",
                dict(source=onnx, output=str(folder / "nncf_defaults.xml"), calib=str(calib), subset=n)))

    def pruned(self, model: str, folder: Path, calib: Path, *, data: Path | None) -> None:
        s = self.s
        keys = ("pruned_fp32", "pruned_int8_ort", "pruned_int8_ov")
        if not any(s.wants(k) for k in keys):
            return
        out = self.step("prune" + (f" + {s.recovery_epochs} recovery epochs" if data else ""), model, "prune",
                        dict(source=str(folder / "model.pt"), output=str(folder / "pruned.pt"), ratio=s.prune_ratio,
                             data=str(data) if data else None, epochs=s.recovery_epochs))
        if out["ok"]:
            out = self.step("export pruned", model, "export", dict(ckpt=str(folder / "pruned.pt"),
                                                                     onnx=str(folder / "pruned.onnx")))
        if not out["ok"]:
            for key in keys:
                self.mark(model, key, out)
            return
        for key, target in (("pruned_int8_ort", "onnxruntime"), ("pruned_int8_ov", "openvino")):
            art = folder / BY_KEY[key].artifact
            q = self.step(f"calibrate pruned ({target})", model, "rtk_int8",
                          dict(source=str(folder / "pruned.onnx"), output=str(art),
                               calib=str(calib), target=target, subset=self.subset(model), seed=s.seed))
            self._adopt(q, art)
            self.mark(model, key, q)

    def pruned_to_target(self, model: str, folder: Path, calib: Path, *, data: Path | None) -> None:
        """Pruned + INT8 on OpenVINO at the ratio rtk's latency-targeted search picks on the latency model for
        `prune_speedup` x ONNX Runtime FP32 (stages.prune_for_speedup); the accuracy model is pruned at that ratio
        and recovered as the 50% rows are."""
        s, key = self.s, "pruned_target_int8_ov"
        if not s.prune_speedup or not s.wants(key):
            self.missing[(model, key)] = f"not measured in {s.mode} mode"
            return
        pt, onnx = folder / "pruned_target.pt", folder / "pruned_target.onnx"
        if model == "L":
            # The INT8 speed-up the first aim assumes, from a pruned network where the 50% rows made one, else
            # from the unpruned FP32 and INT8 IRs; the stage then quantizes and times what it pruned, and tightens
            # the target until that reaches the goal (a pruned network gains less from INT8 than either).
            pairs = [(folder / "pruned.onnx", self._made(model, folder, "pruned_int8_ov"), "the 50%-pruned model"),
                     (folder / "model_fp32.xml", self._made(model, folder, "rtk_int8_ov"), "the unpruned model")]
            pair = next((p for p in pairs if p[0].is_file() and p[1].is_file()), None)
            if pair is None:
                self.missing[(model, key)] = "not available: needs the OpenVINO FP32 and INT8 IRs"
                return
            out = self.step(f"prune to a latency target ({s.prune_speedup:g}x with INT8)", model, "prune_for_speedup",
                            dict(source=str(folder / "model.pt"), output=str(pt), onnx=str(folder / "model.onnx"),
                                 fp32_ir=str(pair[0]), int8_ir=str(pair[1]), estimate_from=pair[2],
                                 speedup=s.prune_speedup, steps=s.prune_search_steps, calib=str(calib),
                                 subset=self.subset(model), seed=s.seed))
            if out["ok"]:
                self.picked_ratio = out["facts"]["ratio"]
        elif self.picked_ratio is None:
            self.missing[(model, key)] = "not available: the latency-targeted search did not run"
            return
        else:
            out = self.step(f"prune at the searched ratio {self.picked_ratio:.3f}" + (f" + {s.recovery_epochs} "
                            "recovery epochs" if data else ""), model, "prune",
                            dict(source=str(folder / "model.pt"), output=str(pt), ratio=self.picked_ratio,
                                 data=str(data) if data else None, epochs=s.recovery_epochs))
        if out["ok"]:
            out = self.step("export pruned to target", model, "export", dict(ckpt=str(pt), onnx=str(onnx)))
        if out["ok"]:
            art = folder / BY_KEY[key].artifact
            out = self.step("calibrate pruned to target (openvino)", model, "rtk_int8",
                            dict(source=str(onnx), output=str(art), calib=str(calib), target="openvino",
                                 subset=self.subset(model), seed=s.seed))
            self._adopt(out, art)
        self.mark(model, key, out)

    def _made(self, model: str, folder: Path, key: str) -> Path:
        """Where a row's artifact was written (rtk may give an IR another name), without marking it missing."""
        return next((Path(st["facts"]["artifact"]) for st in self.stages if st.get("model") == model
                     and Path((st.get("facts") or {}).get("artifact") or "x").stem == key),
                    folder / BY_KEY[key].artifact)

    def calibration_sweep(self, folder: Path, calib: Path) -> None:
        """Wall time of rtk INT8 calibration at several calibration-set sizes, on the latency model, through the
        path rtk takes to an OpenVINO IR (NNCF's OpenVINO backend, `-o *.xml`; its ONNX backend takes about as
        long)."""
        for n in self.s.calib_sizes:
            (self.work / f"sweep_{n}").mkdir(exist_ok=True)
            self.step(f"calibrate {n} (openvino)", "L", "rtk_int8",
                      dict(source=str(folder / "model.onnx"), output=str(self.work / f"sweep_{n}" / "model.xml"),
                           calib=str(calib), target="openvino", subset=n, seed=self.s.seed), kind="calibration")

    @staticmethod
    def _adopt(out: dict[str, Any], expected: Path) -> None:
        """rtk may write the INT8 artifact under another name (e.g. an IR); keep it under the row's file name."""
        produced = Path((out.get("facts") or {}).get("output") or expected)
        if out["ok"] and produced != expected and produced.is_file():
            if produced.suffix == ".xml":
                out["facts"]["artifact"] = str(produced)
            else:
                shutil.copy(produced, expected)

    def artifact(self, model: str, folder: Path, key: str) -> Path | None:
        """The file a row runs, or None (with the reason in `missing`)."""
        row = next(r for r in ROWS if r.key == key)
        if not self.s.wants(key):
            self.missing[(model, key)] = f"not measured in {self.s.mode} mode"
        if (model, key) in self.missing:
            return None
        for st in self.stages:
            art = (st.get("facts") or {}).get("artifact")
            if st.get("model") == model and art and Path(art).stem == key:
                return Path(art)
        path = folder / row.artifact
        if not path.is_file():
            self.missing[(model, key)] = f"not available: {path.name} was not produced"
            return None
        return path
