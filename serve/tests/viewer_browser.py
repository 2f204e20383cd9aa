#!/usr/bin/env python3
"""The browser viewer (`segvol view`) in headless Chromium, driven through WebDriver (Debian's
chromium + chromium-driver, the selenium client), as issue 14 asks: open the page on a shipped
image, drag a box on a slice, add a positive and a negative point, undo once, save; the saved
NIfTI must equal what the library's InteractiveSession gives for the same actions
(`segvol view --replay`), and the screenshot must not be blank.

    python serve/tests/viewer_browser.py [--segvol target/debug/segvol] [--shared ../shared] [--shot out.png]

Ends with `N passed, M failed`; exit status 1 on any failure.
"""
import argparse
import io
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

ap = argparse.ArgumentParser()
ap.add_argument("--segvol", default="target/debug/segvol")
ap.add_argument("--shared", default=os.environ.get("SEGVOL_SHARED", "../shared"))
ap.add_argument("--image", default="data/nifti/mr_abdomen_multi3_img.nii.gz")
ap.add_argument("--shot", default=None, help="also keep the screenshot here")
ap.add_argument("--timeout", type=float, default=60, help="seconds to wait for one step")
ap.add_argument("--click-effect", choices=["assert", "report"], default="assert",
                help="assert that a positive click labels its voxel and grows the mask around it and "
                     "a negative one shrinks it, or only report it (where the model is known not "
                     "to: issue 20)")
ap.add_argument("--expect-window", default="auto",
                help="the window the page opens with: auto (MR), soft (a CT in HU)")
ap.add_argument("--gl", choices=["auto", "llvmpipe", "swiftshader"], default="auto",
                help="software WebGL: Mesa's llvmpipe through ANGLE on EGL (auto, where Mesa's EGL is "
                     "installed: libegl-mesa0, libgl1-mesa-dri) or Chromium's SwiftShader")
args = ap.parse_args()
if args.gl == "auto":
    mesa = any(os.path.exists(os.path.join(d, "libEGL_mesa.so.0"))
               for d in ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib"])
    args.gl = "llvmpipe" if mesa else "swiftshader"
GL_FLAGS = {"llvmpipe": ["--use-gl=angle", "--use-angle=gl-egl", "--ignore-gpu-blocklist"],
            "swiftshader": ["--use-angle=swiftshader", "--enable-unsafe-swiftshader"]}[args.gl]
results = []


def check(name, ok, detail=""):
    results.append(bool(ok))
    print(f"{'ok  ' if ok else 'FAIL'} {name}{(': ' + str(detail)) if detail else ''}", flush=True)


tmp = tempfile.mkdtemp(prefix="segvol-viewer-")
image = os.path.join(args.shared, args.image)
saved = os.path.join(tmp, "saved.nii")
t0 = time.perf_counter()
server = subprocess.Popen([args.segvol, "view", image, "--port", "0", "--out", saved],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
line = server.stdout.readline()
m = re.search(r"(http://[0-9.]+:\d+)/", line)
if not m:
    server.kill()
    sys.exit(f"viewer did not start: {line!r} {server.stderr.read()}")
url = m.group(1)
threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()

opts = webdriver.ChromeOptions()
opts.binary_location = "/usr/bin/chromium"
for a in ["--headless=new", "--no-sandbox", "--window-size=1000,900", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--disable-quic", *GL_FLAGS, f"--user-data-dir={tmp}/profile"]:
    opts.add_argument(a)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
try:
    driver.set_script_timeout(args.timeout)
    driver.get(url + "/?layout=axial")

    def wait(cond, what):
        end = time.time() + args.timeout
        while time.time() < end:
            v = driver.execute_script(f"return {cond};")
            if v:
                return v
            err = driver.execute_script("return window.segvol && window.segvol.error;")
            if err:
                raise RuntimeError(f"{what}: page error {err}")
            time.sleep(0.1)
        raise RuntimeError(f"{what}: timed out")

    wait("window.segvol && window.segvol.ready", "page ready")
    first_image = time.perf_counter() - t0
    info = json.loads(subprocess.run([args.segvol, "info", image, "--json"], capture_output=True,
                                     text=True, check=True).stdout)
    zyx_shape = (info.get("volume") or info)["shape_zyx"]
    shown = driver.execute_script("return Array.from(window.segvol.nv.volumes[0].dims.slice(1, 4));")
    timings = driver.execute_script("return window.segvol.timings;") or {}
    renderer = driver.execute_script("""
        const gl = window.segvol.nv.gl, e = gl.getExtension("WEBGL_debug_renderer_info");
        return e ? gl.getParameter(e.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER);""")
    check(f"WebGL renders in software as asked ({args.gl})", args.gl.lower() in str(renderer).lower(), renderer)
    check("page shows the image at its size", shown == zyx_shape[::-1],
          f"NiiVue x,y,z {shown} vs segvol info z,y,x {zyx_shape}; {first_image:.1f} s to first image "
          f"(NiiVue load {timings.get('load_ms', 0) / 1e3:.1f} s, its first frame "
          f"{timings.get('first_frame_ms', 0) / 1e3:.1f} s, drawing layer {timings.get('drawing_ms', 0) / 1e3:.1f} s)")
    win = driver.execute_script("return window.segvol.window;")
    check(f"first look: window {args.expect_window!r}", win == args.expect_window, win)
    canvas = driver.find_element(By.ID, "gl")
    w, h = canvas.size["width"], canvas.size["height"]
    # The shipped model has no CLIP text tower: the text field stays hidden.
    check("text field hidden without a text tower",
          driver.execute_script("return document.getElementById('textform').hidden;") is True)

    def done_after(fn, what):
        n = driver.execute_script("return window.segvol.done;")
        t = time.perf_counter()
        fn()
        wait(f"window.segvol.done > {n} && !window.segvol.busy", what)
        ms = (time.perf_counter() - t) * 1e3
        err = driver.execute_script("return window.segvol.error;")
        last = driver.execute_script("return window.segvol.last;") or {}
        page = last.get("page") or {}
        print(f"     {what}: round trip {ms:.0f} ms (the page's request {page.get('action_ms', float('nan')):.0f} ms, "
              f"its repaint {page.get('repaint_ms', float('nan')):.0f} ms), model {last.get('ms', float('nan')):.0f} ms",
              flush=True)
        return ms, err

    # A box: drag across the middle of the axial slice.
    ms, err = done_after(lambda: ActionChains(driver)
                         .move_to_element_with_offset(canvas, -w // 10, -h // 10)
                         .click_and_hold().move_by_offset(w // 5, h // 5).release().perform(),
                         "box")
    last = driver.execute_script("return window.segvol.last;")
    check("drag = box: segments something", err is None and last and last["voxels"] > 0, f"{ms:.0f} ms, {last}")
    def screen_offset(v):
        """Where voxel v = [z, y, x] of the shown slice is on screen, from NiiVue's forward map
        (voxel → fraction → canvas pixels), not from the page's click handler (the inverse map
        under test): the offset from the canvas centre, in CSS pixels."""
        return driver.execute_script("""
            const nv = window.segvol.nv, v = arguments[0];
            const p = nv.frac2canvasPos(nv.vox2frac([v[2], v[1], v[0]]));
            const r = nv.canvas.getBoundingClientRect(), dpr = window.devicePixelRatio || 1;
            return p ? [p[0] / dpr - r.width / 2, p[1] / dpr - r.height / 2] : null;""", v)

    def under_pointer(v):
        """The voxel of v's slice under the point where the last click landed (the page records
        the event's clientX/Y), by NiiVue's forward map: of v and its eight in-plane neighbours,
        the one whose centre is nearest to it (on a regular grid, the one whose square holds
        it). At CT size a voxel is about a CSS pixel wide and the WebDriver click lands on
        whole pixels, so it can be v's neighbour; the page must then send that one."""
        pointer = driver.execute_script("return window.segvol.pointer;")
        if not pointer:
            return None, "nowhere (the page recorded no click)"
        cands = [[v[0], v[1] + a, v[2] + b] for a in (-1, 0, 1) for b in (-1, 0, 1)]
        centres = driver.execute_script("""
            const nv = window.segvol.nv, r = nv.canvas.getBoundingClientRect();
            const dpr = window.devicePixelRatio || 1;
            return arguments[0].map((v) => {
              const p = nv.frac2canvasPos(nv.vox2frac([v[2], v[1], v[0]]));
              return p ? [p[0] / dpr + r.left, p[1] / dpr + r.top] : null;
            });""", cands)
        dist = [math.hypot(c[0] - pointer[0], c[1] - pointer[1]) if c else math.inf for c in centres]
        return cands[dist.index(min(dist))], pointer

    def label_at(v):
        q = f"?lo={v[0]},{v[1]},{v[2]}&hi={v[0]},{v[1]},{v[2]}"
        return urllib.request.urlopen(url + "/api/labels" + q).read()[0]

    def near(v, r=3):
        """Labelled voxels in the 7×7 square around v on its slice."""
        q = f"?lo={v[0]},{max(v[1] - r, 0)},{max(v[2] - r, 0)}&hi={v[0]},{v[1] + r},{v[2] + r}"
        return sum(urllib.request.urlopen(url + "/api/labels" + q).read())

    def point_at(v, fg):
        dx, dy = screen_offset(v)
        chain = ActionChains(driver)
        if not fg:
            chain = chain.key_down(Keys.SHIFT)
        chain = chain.move_to_element_with_offset(canvas, round(dx), round(dy)).click()
        if not fg:
            chain = chain.key_up(Keys.SHIFT)
        return done_after(chain.perform, "positive point" if fg else "negative point")

    # Targets on the box's slice: an unlabelled voxel at the mask's border (most labelled
    # neighbours; a positive click there must label it and grow the mask), then a labelled
    # voxel inside (a negative click there must shrink the mask around it).
    box = json.loads(urllib.request.urlopen(url + "/api/actions").read())[0]
    z = box["lo"][0]
    dims = (info.get("volume") or info)["shape_zyx"]
    y0, x0 = max(box["lo"][1] - 3, 0), max(box["lo"][2] - 3, 0)
    y1, x1 = min(box["hi"][1] + 3, dims[1] - 1), min(box["hi"][2] + 3, dims[2] - 1)
    block = urllib.request.urlopen(url + f"/api/labels?lo={z},{y0},{x0}&hi={z},{y1},{x1}").read()
    nx = x1 - x0 + 1
    lab = {(y, x): block[(y - y0) * nx + (x - x0)] for y in range(y0, y1 + 1) for x in range(x0, x1 + 1)}

    def score(y, x):
        return sum(lab.get((y + a, x + b), 0) for a in range(-3, 4) for b in range(-3, 4))

    free = [(score(y, x), [z, y, x]) for (y, x), l in lab.items() if l == 0
            and y0 + 3 <= y <= y1 - 3 and x0 + 3 <= x <= x1 - 3]
    pos = max(free)[1] if free else [z, (y0 + y1) // 2, (x0 + x1) // 2]
    taken = sorted([z, y, x] for (y, x), l in lab.items() if l == 1)
    neg = taken[len(taken) // 3] if taken else pos
    before, near_pos = label_at(pos), near(pos)
    ms, err = point_at(pos, True)
    sent = json.loads(urllib.request.urlopen(url + "/api/actions").read())[-1]
    under, pointer = under_pointer(pos)
    check("click = positive point on the voxel under the cursor", err is None and sent["fg"] is True
          and sent["zyx"] == under,
          f"{ms:.0f} ms, aimed at {pos}, landed at {pointer} on {under}, page sent {sent['zyx']}")
    effect = check if args.click_effect == "assert" else (
        lambda name, ok, detail="": print(f"info {name}: {'yes' if ok else 'NO'}: {detail}", flush=True))
    effect("a positive click labels the voxel it is on, and the mask grows around it",
          label_at(sent["zyx"]) == 1 and near(pos) > near_pos,
          f"label there {before} → {label_at(sent['zyx'])}; 7×7 around it {near_pos} → {near(pos)}")
    near_before = near(neg)
    ms, err = point_at(neg, False)
    sent = json.loads(urllib.request.urlopen(url + "/api/actions").read())[-1]
    under, pointer = under_pointer(neg)
    check("shift+click = negative point on the voxel under the cursor", err is None and sent["fg"] is False
          and sent["zyx"] == under,
          f"{ms:.0f} ms, aimed at {neg}, landed at {pointer} on {under}, page sent {sent['zyx']}")
    # The shrink is asserted around the click, not at its voxel: the shipped model often keeps
    # the clicked voxel itself (issue 20's weak clicks); the label there is reported.
    effect("a negative click shrinks the mask around the voxel it is on", near(neg) < near_before,
          f"7×7 around it {near_before} → {near(neg)}; the voxel itself now {label_at(sent['zyx'])}")
    ms, err = done_after(lambda: driver.find_element(By.ID, "undo").click(), "undo")
    check("undo", err is None and driver.execute_script("return window.segvol.last.undo_depth;") == 2)
    # The page paints each action's changed box into NiiVue's drawing layer itself (its own
    # array-order → RAS index map). NiiVue's saver maps the drawing back to the file's order by
    # its own route (img2RASstep); that must equal the server's label map, voxel for voxel.
    cmp = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        (async () => {
          const nv = window.segvol.nv;
          const u = await nv.saveImage({ filename: "", isSaveDrawing: true });
          const off = new DataView(u.buffer, u.byteOffset).getFloat32(108, true);
          const page = u.subarray(off);
          const srv = new Uint8Array(await (await fetch("/api/labels")).arrayBuffer());
          let bad = 0, lab = 0;
          for (let i = 0; i < srv.length; i++) { if (page[i] !== srv[i]) { bad++; } if (srv[i]) { lab++; } }
          done([page.length, srv.length, bad, lab]);
        })().catch((e) => done(String(e)));""")
    check("the page's label layer equals the server's label map, voxel for voxel",
          isinstance(cmp, list) and cmp[0] == cmp[1] and cmp[2] == 0 and cmp[3] > 0,
          f"page voxels, server voxels, differing, labelled: {cmp}")
    driver.find_element(By.ID, "save").click()
    wait("window.segvol.saved", "save")
    check("save writes --out", os.path.isfile(saved))
    png = driver.get_screenshot_as_png()
    if args.shot:
        with open(args.shot, "wb") as f:
            f.write(png)
    im = Image.open(io.BytesIO(png)).convert("RGB")
    px = list(im.get_flattened_data()) if hasattr(im, "get_flattened_data") else list(im.getdata())
    lum = [sum(p) / 3 for p in px]
    mean = sum(lum) / len(lum)
    sd = (sum((v - mean) ** 2 for v in lum) / len(lum)) ** 0.5
    red = sum(1 for r, g, b in px if r > 150 and g < 110 and b < 130)
    check("screenshot is not blank (image contrast, label colour present)", sd > 10 and red > 50,
          f"sd {sd:.1f}, {red} label-coloured pixels")
    actions = json.loads(urllib.request.urlopen(url + "/api/actions").read())
    check("the page sent box, point, point, undo",
          [a["action"] for a in actions] == ["box", "point", "point", "undo"], actions)
    with open(os.path.join(tmp, "actions.json"), "w") as f:
        json.dump(actions, f)
    rep = os.path.join(tmp, "replay.nii")
    r = subprocess.run([args.segvol, "view", image, "--replay", os.path.join(tmp, "actions.json"),
                        "--out", rep], capture_output=True, text=True)
    check("library replay runs", r.returncode == 0, r.stderr.strip()[-300:])
    same = os.path.isfile(rep) and open(rep, "rb").read() == open(saved, "rb").read()
    check("saved NIfTI equals the library's InteractiveSession for the same actions", same)
finally:
    driver.quit()
    server.terminate()
    try:
        server.wait(10)
    except subprocess.TimeoutExpired:
        server.kill()

passed, failed = sum(results), len(results) - sum(results)
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
