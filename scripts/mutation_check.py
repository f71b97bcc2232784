"""Break the drag code on purpose, one mutation at a time, and check that a test fails.

    .venv/bin/python scripts/mutation_check.py [substring of a mutation name ...]

Each entry replaces one exact line (or lines) of the source, runs the named tests, prints
CAUGHT or MISSED, and restores the file. An entry whose line no longer exists stops the
script: update the entry with the code. A test that cannot fail guards nothing.
"""
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
M = [
 ("warp field zero", "backend/dragwalk/drag/warp.py", "        return field\n", "        return 0 * field\n", "tests/test_drag_methods.py -k 'move_content and warp'"),
 ("converged = tracker's word", "backend/dragwalk/drag/run.py", "        self.converged = self.arrival.all_arrived", "        self.converged = tracker_arrived", "tests/test_drag_methods.py -k 'converged_means or claims_arrival'"),
 ("locate returns its input", "backend/dragwalk/drag/verify.py", "    return (found + 0.5) / scale - 0.5", "    return torch.tensor([float(point[0]), float(point[1])])", "tests/test_drag_field.py"),
 ("stable loss x0", "backend/dragwalk/drag/stable.py", "        return (ahead - goal).abs().mean(dim=(1, 2)).sum()", "        return 0 * (ahead - goal).abs().mean(dim=(1, 2)).sum()", "tests/test_drag_methods.py -k 'move_content and stable' tests/test_drag_methods.py -k 'loss_moves and stable'"),
 ("draggan loss x0", "backend/dragwalk/drag/draggan.py", "        return (ahead - here).abs().mean(dim=(1, 2)).sum()", "        return 0 * (ahead - here).abs().mean(dim=(1, 2)).sum()", "tests/test_drag_stylegan.py"),
 ("draggan no stop-gradient", "backend/dragwalk/drag/draggan.py", "        here = fx.sample(features.detach(), q, self.ctx.resolution)      # stop-gradient", "        here = fx.sample(features, q, self.ctx.resolution)", "tests/test_drag_stylegan.py"),
 ("draggan tracking returns input", "backend/dragwalk/drag/draggan.py", "        return (handles + offsets).clamp(0, self.ctx.resolution - 1)\n\n    def match_costs", "        return handles.clone()\n\n    def match_costs", "tests/test_drag_methods.py -k tracker_follows"),
 ("stable tracking returns input", "backend/dragwalk/drag/stable.py", "        return (handles + offsets).clamp(0, self.ctx.resolution - 1)", "        return handles.clone()", "tests/test_drag_methods.py -k tracker_follows"),
 ("draggan loss x0 (blob)", "backend/dragwalk/drag/draggan.py", "        return (ahead - here).abs().mean(dim=(1, 2)).sum()", "        return 0 * (ahead - here).abs().mean(dim=(1, 2)).sum()", "tests/test_drag_methods.py -k loss_moves"),
 ("draggan no stop-gradient (blob)", "backend/dragwalk/drag/draggan.py", "        here = fx.sample(features.detach(), q, self.ctx.resolution)      # stop-gradient", "        here = fx.sample(features, q, self.ctx.resolution)", "tests/test_drag_methods.py -k 'loss_moves and draggan'"),
 ("freedrag line search (blob)", "backend/dragwalk/drag/freedrag.py", "            p[k] = self._next_position(features, k, p[k], targets[k], float(now[k]))", "            pass", "tests/test_drag_methods.py -k 'loss_moves and freedrag'"),
 ("freedrag without line search", "backend/dragwalk/drag/freedrag.py", "            p[k] = self._next_position(features, k, p[k], targets[k], float(now[k]))", "            pass", "tests/test_drag_methods.py -k tracker_follows"),
 ("mask term zero", "backend/dragwalk/drag/features.py", "    return ((features - reference).abs() * keep).mean()", "    return 0 * ((features - reference).abs() * keep).mean()", "tests/test_drag.py -k outside_the_mask"),
 ("rbf without solve", "backend/dragwalk/drag/field.py", "    coef = torch.linalg.solve(gram + ridge, motion)                  # [K, 2]", "    coef = motion", "tests/test_drag_field.py"),
 ("warp sign flipped", "backend/dragwalk/drag/field.py", "    grid = cell_centres(size, resolution, features.device) - field.to(features.device)", "    grid = cell_centres(size, resolution, features.device) + field.to(features.device)", "tests/test_drag_field.py tests/test_drag_methods.py -k 'warp or field'"),
 ("stylegan2 skip image not warped", "backend/dragwalk/models/stylegan2/generator.py", "            out[layer + RGB_SUFFIX] = skip", "            pass", "tests/test_drag_stylegan.py tests/test_stylegan2.py"),
 ("freedrag loss x0", "backend/dragwalk/drag/freedrag.py", "        return ((samples - self.template[active]).abs().mean(dim=(1, 2)) / self.scale[active]).sum()", "        return 0 * ((samples - self.template[active]).abs().mean(dim=(1, 2)) / self.scale[active]).sum()", "tests/test_drag_methods.py -k loss_moves"),
 ("no sub-steps", "backend/dragwalk/drag/field.py", "        substeps = min(MAX_SUBSTEPS, max(1, math.ceil(longest / (STEP_PER_SIGMA * sigma))))", "        substeps = 1", "tests/test_drag_field.py"),
 ("no narrowing", "backend/dragwalk/drag/field.py", "    sigma = min(max(float(base), SIGMA_PER_LENGTH * longest), narrowest_sigma(handles, targets))", "    sigma = max(float(base), SIGMA_PER_LENGTH * longest)", "tests/test_drag_field.py"),
 ("nothing_to_move ignored", "backend/dragwalk/drag/run.py", "        if bool(self._idle.all()):\n            self._finish(\"nothing_to_move\", tracker_arrived=True)", "        if False:\n            pass", "tests/test_drag_methods.py -k nothing_to_move"),
]
only = sys.argv[1:] 
for name, path, old, new, tests in M:
    if only and not any(o in name for o in only): continue
    f = ROOT / path
    src = f.read_text()
    assert src.count(old) == 1, (name, src.count(old))
    f.write_text(src.replace(old, new))
    try:
        r = subprocess.run(f"cd {ROOT} && OMP_NUM_THREADS=1 .venv/bin/python -m pytest -q -x -p no:cacheprovider {tests}", shell=True, capture_output=True, text=True, timeout=900)
        last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr[-200:]
        print(f"{'CAUGHT' if r.returncode != 0 else 'MISSED'}: {name}: {last}", flush=True)
    finally:
        f.write_text(src)
