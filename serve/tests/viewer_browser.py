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
ap.add_argument("--expect-window", default="auto",
                help="the window the page opens with: auto (MR), soft (a CT in HU)")
args = ap.parse_args()
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
          "--disable-quic", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
          f"--user-data-dir={tmp}/profile"]:
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
    check("page shows the image at its size", shown == zyx_shape[::-1],
          f"NiiVue x,y,z {shown} vs segvol info z,y,x {zyx_shape}; {first_image:.1f} s to first image")
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
        print(f"     {what}: round trip {ms:.0f} ms, model {last.get('ms', float('nan')):.0f} ms", flush=True)
        return ms, err

    # A box: drag across the middle of the axial slice.
    ms, err = done_after(lambda: ActionChains(driver)
                         .move_to_element_with_offset(canvas, -w // 10, -h // 10)
                         .click_and_hold().move_by_offset(w // 5, h // 5).release().perform(),
                         "box")
    last = driver.execute_script("return window.segvol.last;")
    check("drag = box: segments something", err is None and last and last["voxels"] > 0, f"{ms:.0f} ms, {last}")
    ms, err = done_after(lambda: ActionChains(driver).move_to_element_with_offset(canvas, 0, 0)
                         .click().perform(), "positive point")
    check("click = positive point", err is None, f"{ms:.0f} ms")
    ms, err = done_after(lambda: ActionChains(driver).key_down(Keys.SHIFT)
                         .move_to_element_with_offset(canvas, w // 20, h // 20).click()
                         .key_up(Keys.SHIFT).perform(), "negative point")
    check("shift+click = negative point", err is None, f"{ms:.0f} ms")
    ms, err = done_after(lambda: driver.find_element(By.ID, "undo").click(), "undo")
    check("undo", err is None and driver.execute_script("return window.segvol.last.undo_depth;") == 2)
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
