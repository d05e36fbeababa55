#!/usr/bin/env python3
"""The browser's work per frame: decode + paint + draw of the radiometric stream (web/thermal.js),
against today's JPEG (createImageBitmap + drawImage), in headless Chromium at a phone's viewport,
unthrottled and with the CPU throttled 4x (CDP Emulation.setCPUThrottlingRate).

    scripts/bench_browser.py ../shared/realdata/cacophony-v2.cptv sim [--rates 1 4]

Frames are encoded here (flirstream/radiometric.py, encoder/render.py) and handed to a test page served
by a real Tornado static server on a loopback port (flirstream.testing.StaticSite). The times are the main
thread's (performance.now() around each step, frames one after another); the canvas is 390 CSS
pixels wide at device pixel ratio 3, as on a phone. Writes bench-results/browser.json.
"""
from __future__ import annotations

import argparse
import base64
import sys

from playwright.sync_api import sync_playwright

from benchlib import ROOT  # (first: it puts the checkout on sys.path for the stages' packages)
from encoder.render import Renderer
from flirstream.testing import CHROMIUM, CHROMIUM_ARGS, StaticSite, write_json
from recordings import load
from flirstream import radiometric

PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 3, "is_mobile": True,
         "has_touch": True}

BENCH_JS = """async ([payloads, jpegs, meta, rounds]) => {
    const canvas = page.canvas;
    canvas.style.width = "390px";
    canvas.style.height = "292px";
    canvas.width = 390 * devicePixelRatio;
    canvas.height = 292 * devicePixelRatio;
    const bufs = payloads.map(page.bytes);
    const jpgs = jpegs.map((j) => new Blob([page.bytes(j)], {type: "image/jpeg"}));
    const view = new thermal.ThermalView({palette: "ironbow", agc: "linear"});
    const t = {decode: [], paint: [], draw: [], total: [], jpeg: []};
    const ctx = canvas.getContext("2d");
    for (let r = 0; r < rounds; r++) {
        for (let i = 0; i < bufs.length; i++) {
            const t0 = performance.now();
            const frame = await thermal.decode(bufs[i]);
            const t1 = performance.now();
            const out = view.render(frame, meta);
            const t2 = performance.now();
            thermal.draw(canvas, out.image);
            const t3 = performance.now();
            t.decode.push(t1 - t0); t.paint.push(t2 - t1); t.draw.push(t3 - t2); t.total.push(t3 - t0);
        }
        for (let i = 0; i < jpgs.length; i++) {  // today's path: decode the JPEG, draw it scaled
            const t0 = performance.now();
            const bitmap = await createImageBitmap(jpgs[i]);
            ctx.imageSmoothingEnabled = true;
            ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
            bitmap.close();
            t.jpeg.push(performance.now() - t0);
        }
    }
    return t;
}"""


def summary(times: list[float]) -> dict:
    s = sorted(times)
    pick = lambda q: round(s[min(len(s) - 1, int(q * len(s)))], 3)  # noqa: E731
    return {"median": pick(0.5), "p95": pick(0.95), "max": round(s[-1], 3),
            "mean": round(sum(s) / len(s), 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="+", help="CPTV/VoSPI file, sim, sim-smooth")
    parser.add_argument("--rates", type=float, nargs="+", default=[1, 4], help="CPU throttling rates")
    parser.add_argument("--rounds", type=int, default=2, help="passes over the frames")
    parser.add_argument("--json", default=str(ROOT / "bench-results" / "browser.json"))
    args = parser.parse_args()
    site = StaticSite()
    results: dict = {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            for spec in args.sources:
                f = load(spec)
                payloads = [base64.b64encode(radiometric.encode(x)).decode() for x in f.pixels]
                renderer = Renderer()
                jpegs = [base64.b64encode(renderer.render(x, tlinear=f.tlinear)).decode()
                         for x in f.pixels]
                meta = {"tlinear": f.tlinear, "kelvin_per_count": 0.01}
                for rate in args.rates:
                    context = browser.new_context(**PHONE)
                    page = context.new_page()
                    page.goto(site.url + "/thermal.html")
                    page.wait_for_function("window.ready === true", timeout=15_000)
                    cdp = context.new_cdp_session(page)
                    cdp.send("Emulation.setCPUThrottlingRate", {"rate": rate})
                    page.evaluate(BENCH_JS, [payloads[:5], jpegs[:5], meta, 1])  # warm up (JIT)
                    times = page.evaluate(BENCH_JS, [payloads, jpegs, meta, args.rounds])
                    context.close()
                    key = f"{f.label} cpu/{rate:g}"
                    results[key] = {name: summary(v) for name, v in times.items()}
                    results[key]["frames"] = len(times["total"])
                    r = results[key]
                    print(f"{key:32} radiometric decode {r['decode']['median']:.2f} + paint "
                          f"{r['paint']['median']:.2f} + draw {r['draw']['median']:.2f} = "
                          f"{r['total']['median']:.2f} ms median, p95 {r['total']['p95']:.2f}, "
                          f"max {r['total']['max']:.2f} | JPEG 640x480 {r['jpeg']['median']:.2f} "
                          f"ms median, p95 {r['jpeg']['p95']:.2f}")
            browser.close()
    finally:
        site.close()
    print(f"wrote {write_json(args.json, results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
