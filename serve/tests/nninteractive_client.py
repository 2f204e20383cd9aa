#!/usr/bin/env python3
"""`segvol serve` driven by the real nnInteractive remote client (PyPI nninteractive-client
==2.6.0, the client napari's and 3D Slicer's plugins use), as issue 13 asks:

  claim, set_image, a 2-D box, a positive and a negative point, undo, reset, a second object,
  release; wrong key -> 401, unknown lease -> 410, a full server -> 503; malformed bodies,
  wrong shapes, prompts outside the image and huge declared sizes -> 4xx while the server keeps
  serving; then 3 clients at once for 100 interactions each (p50 / p95 latency, server memory).

    python serve/tests/nninteractive_client.py [--segvol target/debug/segvol] [--shared ../shared]

Prints one line per check and ends with `N passed, M failed`; exit status 1 on any failure.
"""
import argparse
import os
import re
import struct
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
from nnInteractive.inference.remote import (
    ServerAtCapacityError,
    SessionExpiredError,
    nnInteractiveRemoteInferenceSession,
)

os.environ["NO_PROXY"] = "127.0.0.1,localhost"
ap = argparse.ArgumentParser()
ap.add_argument("--segvol", default="target/debug/segvol")
ap.add_argument("--shared", default=os.environ.get("SEGVOL_SHARED", "../shared"))
ap.add_argument("--rounds", type=int, default=100)
args = ap.parse_args()

KEY = "test-key"
results = []


def check(name, ok, detail=""):
    results.append(bool(ok))
    print(f"{'ok  ' if ok else 'FAIL'} {name}{(': ' + str(detail)) if detail else ''}", flush=True)


def case(name):
    with np.load(os.path.join(args.shared, "data/npz", name + ".npz"), allow_pickle=True) as f:
        return f["imgs"], f["gts"], f["spacing"]


def start(*extra):
    p = subprocess.Popen(
        [args.segvol, "serve", "--port", "0", "--api-key", KEY, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    line = p.stdout.readline()
    m = re.search(r"http://([0-9.]+):(\d+)", line)
    if not m:
        p.kill()
        raise SystemExit(f"server did not start: {line!r} {p.stderr.read()}")
    # Keep draining stderr (the log) so the server never blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
    return p, f"http://{m.group(1)}:{m.group(2)}"


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for l in f:
            if l.startswith("VmRSS:"):
                return int(l.split()[1])
    return 0


def region_ok(box, buf):
    if box is None:
        return True
    return all(0 <= lo < hi <= n for (lo, hi), n in zip(box, buf.shape))


server, url = start("--max-sessions", "3")
try:
    # --- the flow a viewer runs --------------------------------------------------------------
    img, gts, spacing = case("mr_abdomen_multi3")
    s = nnInteractiveRemoteInferenceSession(url, api_key=KEY)
    check("claim + capabilities", s.supported_interactions.get("bbox2d") and s.supports_undo,
          s.supported_interactions)
    check("preferred_scribble_thickness has 3 numbers", len(s.preferred_scribble_thickness) == 3)
    s.set_image(img[None], {"spacing": [float(v) for v in spacing]})
    buf = np.zeros(img.shape, np.uint8)
    s.set_target_buffer(buf)
    z, y, x = np.nonzero(gts == 1)
    zm = int(np.median(z))
    sl = np.nonzero(gts[zm] == 1)
    box = [[zm, zm + 1], [int(sl[0].min()), int(sl[0].max()) + 1],
           [int(sl[1].min()), int(sl[1].max()) + 1]]
    r = s.add_bbox_interaction(box, include_interaction=True)
    check("2-D box: region inside the image, values 0/1, dtype uint8",
          r is not None and region_ok(r, buf) and set(np.unique(buf)) <= {0, 1} and buf.dtype == np.uint8,
          r)
    fg0 = int(buf.sum())
    check("2-D box segments something", fg0 > 0, f"{fg0} voxels")
    # A positive point on a GT voxel the mask missed (or any GT voxel), then a negative one on a
    # mask voxel outside the GT (or any mask voxel).
    miss = np.argwhere((gts == 1) & (buf == 0))
    p = miss[len(miss) // 2] if len(miss) else np.argwhere(gts == 1)[0]
    after_box = buf.copy()
    r = s.add_point_interaction([int(v) for v in p], include_interaction=True)
    check("positive point: region inside the image", region_ok(r, buf), r)
    after_pos = buf.copy()
    extra = np.argwhere((gts != 1) & (buf == 1))
    q = extra[len(extra) // 2] if len(extra) else np.argwhere(buf == 1)[0]
    r = s.add_point_interaction([int(v) for v in q], include_interaction=False)
    check("negative point: region inside the image", region_ok(r, buf), r)
    changed = not np.array_equal(buf, after_pos)
    check("negative point changes the mask", changed)
    ok = s.undo()
    check("undo returns True and restores the mask before the negative point",
          ok and np.array_equal(buf, after_pos))
    ok = s.undo()
    check("a second undo (segvol keeps a history) restores the mask after the box",
          ok and np.array_equal(buf, after_box))
    check("_predict with nothing queued returns None", s._predict() is None)
    s.reset_interactions()
    check("reset zeroes the buffer", buf.sum() == 0)
    z2 = np.nonzero(gts == 2)
    zm2 = int(np.median(z2[0]))
    sl2 = np.nonzero(gts[zm2] == 2)
    box2 = [[zm2, zm2 + 1], [int(sl2[0].min()), int(sl2[0].max()) + 1],
            [int(sl2[1].min()), int(sl2[1].max()) + 1]]
    r = s.add_bbox_interaction(box2, include_interaction=True)
    check("second object: region inside the image and something segmented",
          region_ok(r, buf) and buf.sum() > 0, r)
    # Queued interactions, then one prediction.
    r = s.add_point_interaction([int(v) for v in np.argwhere(gts == 2)[0]], True, run_prediction=False)
    check("queued point returns None", r is None)
    r = s._predict()
    check("_predict runs the queued point", region_ok(r, buf))
    # Scribble and lasso (answered by SegVol's prompts, docs/serve.md).
    crop = np.zeros((1, 5, 5), np.uint8)
    crop[0, 2, :] = 1
    zc, yc, xc = np.argwhere(gts == 2)[0]
    ib = [[int(zc), int(zc) + 1], [max(int(yc) - 2, 0), max(int(yc) - 2, 0) + 5],
          [max(int(xc) - 2, 0), max(int(xc) - 2, 0) + 5]]
    r = s.add_scribble_interaction(crop, True, interaction_bbox=ib)
    check("scribble answered", region_ok(r, buf), r)
    lasso = np.zeros((1, 5, 5), np.uint8)
    lasso[0, 1:4, 1:4] = 1
    r = s.add_lasso_interaction(lasso, True, interaction_bbox=ib)
    check("lasso answered", region_ok(r, buf), r)
    lease = {"Authorization": f"Bearer {KEY}", "X-Lease-Token": s._lease_token}
    s.heartbeat()  # the client's own call must not raise
    r = httpx.post(url + "/heartbeat", headers=lease, json={})
    check("heartbeat on a live lease -> 200", r.status_code == 200, r.text)
    s.close()
    r = httpx.post(url + "/heartbeat", headers=lease, json={})
    check("release ends the lease (its heartbeat -> 410)", r.status_code == 410, r.text)

    # --- errors -------------------------------------------------------------------------------
    try:
        nnInteractiveRemoteInferenceSession(url, api_key="wrong")
        check("wrong key -> 401", False)
    except httpx.HTTPStatusError as e:
        check("wrong key -> 401", e.response.status_code == 401)
    h = {"Authorization": f"Bearer {KEY}", "X-Lease-Token": "0" * 32}
    r = httpx.post(url + "/heartbeat", headers=h, json={})
    check("unknown lease -> 410", r.status_code == 410, r.text)
    r = httpx.post(url + "/heartbeat", headers={"Authorization": f"Bearer {KEY}"}, json={})
    check("missing lease -> 410", r.status_code == 410, r.text)
    sessions = [nnInteractiveRemoteInferenceSession(url, api_key=KEY) for _ in range(3)]
    try:
        nnInteractiveRemoteInferenceSession(url, api_key=KEY)
        check("full server -> 503", False)
    except ServerAtCapacityError:
        check("full server -> 503", True)
    for c in sessions[1:]:
        c.close()
    c = sessions[0]
    tok = c._lease_token if hasattr(c, "_lease_token") else None
    hh = {"Authorization": f"Bearer {KEY}", "X-Lease-Token": tok or ""}

    def post(path, body, meta=None, js=False):
        hd = dict(hh)
        if meta is not None:
            hd["X-Meta"] = meta
        if js:
            return httpx.post(url + path, headers=hd, json=body)
        return httpx.post(url + path, headers=hd, content=body)

    r = post("/set_image", b"garbage", "{}")
    check("malformed NNIA -> 400", r.status_code == 400, r.text)
    r = post("/set_image", b"NNIA\x01\x01", "{}")
    check("truncated NNIA -> 400", r.status_code == 400, r.text)
    huge = b"NNIA\x01\x01\x04\x05uint8" + struct.pack("<4q", 1, 100000, 100000, 100000) + b"\0\0\0\0"
    r = post("/set_image", huge, "{}")
    check("huge declared size -> 413", r.status_code == 413, r.text)
    r = post("/set_image", b"x", "{not json")
    check("bad X-Meta -> 400", r.status_code == 400, r.text)
    r = post("/add_point_interaction", {"coordinates": [1, 2, 3]}, js=True)
    check("interaction before set_image -> 400", r.status_code == 400, r.text)
    # segvol-rs's text extension: the shipped model has no CLIP tower, and says so.
    caps = httpx.get(url + "/capabilities", headers={"Authorization": f"Bearer {KEY}"}).json()
    check("capabilities: supports_text false for the shipped model", caps.get("supports_text") is False, caps)
    r = post("/add_text_interaction", {"text": "liver"}, js=True)
    check("text prompt without a text tower -> 400 naming it", r.status_code == 400 and "text tower" in r.text,
          r.text)
    # A 2-D slice as [1,1,Y,X]: one voxel thick. SegVol resizes any crop to its grid, so it is
    # segmented like any image (a point on the slice answers with a region on it).
    one = np.zeros(img[0][None].shape, np.uint8)
    try:
        c.set_image(img[0][None, None], {})
        c.set_target_buffer(one)
        r = c.add_point_interaction([0, 5, 5], True)
        check("a single-slice image works", r is not None and region_ok(r, one), r)
    except httpx.HTTPStatusError as e:
        check("a single-slice image works", False, f"{e.response.status_code} {e.response.text}")
    c.set_image(img[None], {"spacing": [1, 1, 1]})
    c.set_target_buffer(np.zeros(img.shape, np.uint8))
    for name, fn in [
        ("point outside the image -> 400", lambda: c.add_point_interaction([500, 1, 1], True)),
        ("zero-size box -> 400", lambda: c.add_bbox_interaction([[3, 3], [1, 5], [1, 5]], True)),
        ("initial segmentation -> 400 (not supported)",
         lambda: c.add_initial_seg_interaction(np.zeros(img.shape, np.uint8))),
        ("wrong target buffer shape -> 400",
         lambda: c.set_target_buffer(np.zeros((3, 3, 3), np.uint8))),
        ("mask shape differs from its box -> 400",
         lambda: c.add_scribble_interaction(np.ones((1, 3, 3), np.uint8), True,
                                            interaction_bbox=[[0, 1], [0, 5], [0, 5]])),
    ]:
        try:
            fn()
            check(name, False, "accepted")
        except httpx.HTTPStatusError as e:
            check(name, 400 <= e.response.status_code < 500, e.response.status_code)
    c.set_target_buffer(np.zeros(img.shape, np.uint8))
    r = c.add_bbox_interaction(box, True)
    check("the server keeps serving after bad requests", r is not None)
    c.close()
    try:
        c2 = nnInteractiveRemoteInferenceSession(url, api_key=KEY)
        tok2 = c2._lease_token
        httpx.post(url + "/release", headers={"Authorization": f"Bearer {KEY}", "X-Lease-Token": tok2})
        c2.set_image(img[None], {})
        check("released lease -> SessionExpiredError", False)
    except SessionExpiredError:
        check("released lease -> SessionExpiredError", True)

    # --- load: 3 clients x N interactions, each on its own image (a mixed session would show
    # as a box outside that client's image or a wrong buffer) -----------------------------------
    names = ["mr_abdomen_multi3", "ct_kidney_right", "ct_vertebra_L3"]
    lat, errors = [], []
    rss0 = rss_kb(server.pid)

    def client(name, seed):
        rng = np.random.default_rng(seed)
        im, gt, sp = case(name)
        cl = nnInteractiveRemoteInferenceSession(url, api_key=KEY)
        try:
            cl.set_image(im[None], {"spacing": [float(v) for v in sp]})
            b = np.zeros(im.shape, np.uint8)
            cl.set_target_buffer(b)
            zz = np.nonzero(gt)[0]
            zmid = int(np.median(zz))
            ys, xs = np.nonzero(gt[zmid])
            bb = [[zmid, zmid + 1], [int(ys.min()), int(ys.max()) + 1], [int(xs.min()), int(xs.max()) + 1]]
            t = time.perf_counter()
            cl.add_bbox_interaction(bb, True)
            lat.append(time.perf_counter() - t)
            # This client's own image: the box step segments inside this client's box (a
            # session mixed with another client's image would predict elsewhere or nothing).
            zs, ys, xs = np.nonzero(b)
            inside = (ys >= bb[1][0]) & (ys < bb[1][1]) & (xs >= bb[2][0]) & (xs < bb[2][1])
            if len(zs) == 0 or inside.mean() < 0.5:
                errors.append(f"{name}: box step mask has {len(zs)} voxels, "
                              f"{inside.mean() if len(zs) else 0:.2f} of them in its own box")
            for i in range(args.rounds - 1):
                pt = [int(rng.integers(0, n)) for n in im.shape]
                t = time.perf_counter()
                if i % 10 == 9:
                    cl.undo()
                else:
                    r = cl.add_point_interaction(pt, bool(i % 2 == 0))
                    if not region_ok(r, b):
                        errors.append(f"{name}: box {r} outside {b.shape}")
                lat.append(time.perf_counter() - t)
                if not set(np.unique(b)) <= {0, 1}:
                    errors.append(f"{name}: values {np.unique(b)}")
        except Exception as e:  # noqa: BLE001 - reported as a failed check
            errors.append(f"{name}: {type(e).__name__}: {e}")
        finally:
            cl.close()

    t0 = time.perf_counter()
    th = [threading.Thread(target=client, args=(n, k)) for k, n in enumerate(names)]
    [t.start() for t in th]
    [t.join() for t in th]
    wall = time.perf_counter() - t0
    rss1 = rss_kb(server.pid)
    lat_ms = np.array(lat) * 1e3
    check(f"3 clients x {args.rounds} interactions: no error, no mixed session",
          not errors and len(lat) == 3 * args.rounds, errors[:3])
    print(f"latency per interaction: p50 {np.percentile(lat_ms, 50):.0f} ms, "
          f"p95 {np.percentile(lat_ms, 95):.0f} ms, max {lat_ms.max():.0f} ms over {len(lat)} "
          f"(wall {wall:.1f} s); server RSS {rss0 / 1024:.0f} MB before, {rss1 / 1024:.0f} MB after")
    check("server memory flat under load (< 200 MB growth)", rss1 - rss0 < 200 * 1024,
          f"{(rss1 - rss0) / 1024:.0f} MB")
    r = httpx.get(url + "/healthz")
    check("still healthy", r.status_code == 200)
finally:
    server.terminate()
    try:
        server.wait(10)
    except subprocess.TimeoutExpired:
        server.kill()

passed, failed = sum(results), len(results) - sum(results)
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
