"""vaebook._tvshim: `import torchvision` works after `import vaebook` (fresh interpreter each)."""
import json
import subprocess
import sys
import textwrap

from conftest import REPO


def _run(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_make_grid_and_resize_after_shim():
    r = _run("""
        import json, torch
        import vaebook  # its __init__ installs the shim first
        import torchvision, torchvision.transforms.functional as TF
        from torchvision.utils import make_grid
        x = torch.rand(10, 3, 8, 8)
        g = make_grid(x, nrow=4, padding=2)
        # the cell of image 5 (row 1, col 1) starts at (2 + 1*10, 2 + 1*10)
        cell = g[:, 12:20, 12:20]
        img = torch.rand(2, 6, 8, generator=torch.Generator().manual_seed(0))
        small = TF.resize(img, [3, 4], antialias=False)
        pooled = torch.nn.functional.avg_pool2d(img[None], 2)[0]
        msg = None
        if vaebook._tvshim.SHIM_ACTIVE:
            try:
                torch.ops.torchvision.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)
                msg = ""
            except NotImplementedError as e:
                msg = str(e)
        print(json.dumps({"msg": msg, "grid": list(g.shape), "cell_ok": bool(torch.equal(cell, x[5])),
                          "err": float((small - pooled).abs().max()), "small": list(small.shape), "tv": torchvision.__version__}))
    """)
    # 10 images of 8x8 in rows of 4 with padding 2: 3 rows -> 2 + 3*(8+2) = 32, 4 cols -> 2 + 4*10 = 42
    assert r["grid"] == [3, 32, 42]
    assert r["cell_ok"]
    # bilinear halving without antialiasing samples at the centre of each 2x2 block = its mean
    assert r["small"] == [2, 3, 4]
    assert r["err"] < 1e-6
    if r["msg"] is not None:  # shim active: the declared op refuses to run, naming itself
        assert "torchvision::nms" in r["msg"] and "extension" in r["msg"]


def test_shim_is_noop_when_ops_exist():
    """If torchvision::nms is already registered (as with a working extension), nothing is defined."""
    r = _run("""
        import json, torch
        lib = torch.library.Library("torchvision", "FRAGMENT")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        import vaebook._tvshim as s
        print(json.dumps({"active": s.SHIM_ACTIVE, "lib": s._LIB is None}))
    """)
    assert r == {"active": False, "lib": True}
