"""Drives the web UI (web/) in headless Chromium against a running `canvas serve` on the tiny models: a job
from each tab end to end, cancelling from the progress panel and the queue view, a painted mask checked
against what the server recorded, the gallery after a reload (settings reused, a job deleted), the memory
panel, and a console free of errors; then a server with a token, which the page asks for once. Screenshots of each tab go to SHOTS_DIR.

Usage: /usr/bin/python3 test_web_ui.py URL SHOTS_DIR DATA_DIR TOKEN_URL TOKEN
         (Debian's python3-selenium, chromium, chromium-driver)
"""
import base64
import hashlib
import json
import struct
import sys
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

BASE = sys.argv[1].rstrip("/")
SHOTS = Path(sys.argv[2])
DATA = Path(sys.argv[3])
GUARDED, TOKEN = sys.argv[4].rstrip("/"), sys.argv[5]
SHOTS.mkdir(parents=True, exist_ok=True)


def png_bytes(width, height, pixel):
    """An RGB PNG whose pixel (x, y) is pixel(x, y)."""
    rows = b"".join(b"\0" + bytes(c for x in range(width) for c in pixel(x, y)) for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def png_pixels(data):
    """(width, height, channels, rows) of an 8-bit, non-interlaced grey/RGB/RGBA PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, idat = 8, b""
    while position < len(data):
        (length,) = struct.unpack(">I", data[position:position + 4])
        kind, body = data[position + 4:position + 8], data[position + 8:position + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and interlace == 0, (depth, interlace)
            channels = {0: 1, 2: 3, 4: 2, 6: 4}[color]
        elif kind == b"IDAT":
            idat += body
        position += 12 + length
    raw, stride, rows, previous = zlib.decompress(idat), width * channels, [], bytearray(width * channels)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, corner = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 255
        rows.append(line)
        previous = line
    return width, height, channels, rows


def get_json(path):
    with urllib.request.urlopen(BASE + path, timeout=30) as response:
        return json.load(response)


GRADIENT = png_bytes(32, 32, lambda x, y: (x * 8, y * 8, 128))
CHECKER = png_bytes(32, 32, lambda x, y: (255, 255, 255) if (x // 8 + y // 8) % 2 else (20, 60, 200))

options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for argument in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1100",
                 "--disable-gpu", "--no-first-run"]:
    options.add_argument(argument)
options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
wait = WebDriverWait(driver, 120)
console = []


def js(script, *args):
    return driver.execute_script(script, *args)


def element(id_):
    return driver.find_element(By.ID, id_)


def set_value(id_, value):
    field = element(id_)
    field.clear()
    field.send_keys(str(value))


def open_page():
    driver.get(BASE + "/")
    wait.until(lambda _: js("return window.canvasTest && window.canvasTest.ready === true"))


def tab(name):
    driver.find_element(By.CSS_SELECTOR, f'#tabs button[data-tab="{name}"]').click()


def give_pictures(zone_id, pictures, how="drop"):
    """Drops (or pastes) PNG files as a user's drag-and-drop or paste does."""
    js("""
      const [zoneId, pictures, how] = arguments;
      const transfer = new DataTransfer();
      pictures.forEach((data, index) => {
        const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
        transfer.items.add(new File([bytes], `picture${index}.png`, {type: "image/png"}));
      });
      if (how === "paste") document.dispatchEvent(new ClipboardEvent("paste", {clipboardData: transfer}));
      else document.getElementById(zoneId).dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true}));
    """, zone_id, [base64.b64encode(p).decode() for p in pictures], how)


def common_fields(model, prompt, steps=2, size=32):
    Select(element("model")).select_by_value(model)
    set_value("prompt", prompt)
    set_value("steps", steps)
    set_value("cfg_scale", 4)
    set_value("width", size)
    set_value("height", size)


def jobs_seen():
    return js("return window.canvasTest.jobs.length")


def run_and_wait(submit="click"):
    before = jobs_seen()
    if submit == "click":
        element("run").click()
    else:
        element("prompt").send_keys(Keys.CONTROL, Keys.ENTER)
    wait.until(lambda _: jobs_seen() > before or driver.find_elements(By.CSS_SELECTOR, "#errors .error"))
    errors = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#errors .error")]
    assert not errors, errors
    return js("return window.canvasTest.jobs.at(-1)")


def expect_result_image(size=32):
    wait.until(lambda _: js("const i = document.querySelector('#results img'); return i && i.complete && i.naturalWidth > 0"))
    assert js("return document.querySelector('#results img').naturalWidth") == size


def open_gallery():
    tab("gallery")
    wait.until(lambda _: js("""
      const gallery = document.getElementById('gallery');
      return gallery.dataset.state === 'ready' &&
        [...gallery.querySelectorAll('.tile img')].every((image) => image.complete && image.naturalWidth > 0)"""))


def shot(name):
    js("window.scrollTo(0, 0)")
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


try:
    open_page()
    models = [o.get_attribute("value") for o in Select(element("model")).options]
    assert models == ["tiny", "tiny-edit"], models

    # Generate, run with Ctrl+Enter.
    common_fields("tiny", "a red fox in the snow")
    job = run_and_wait(submit="keys")
    assert job["state"] == "done" and job["images"] == 1, job
    expect_result_image()
    generate_id = job["id"]
    shot("generate")

    # Errors are shown in words: the page's own, and the server's naming the field.
    set_value("steps", 0)
    element("run").click()
    wait.until(lambda _: driver.find_elements(By.CSS_SELECTOR, "#errors .error"))
    assert "steps" in element("errors").text, element("errors").text
    driver.find_element(By.CSS_SELECTOR, "#errors .error button").click()
    set_value("prompt", " ")
    element("run").click()
    wait.until(lambda _: "write a prompt first" in element("errors").text)
    driver.find_element(By.CSS_SELECTOR, "#errors .error button").click()
    assert not driver.find_elements(By.CSS_SELECTOR, "#errors .error")

    # A Lightning job: the preset and its LoRA from the picker.
    Select(element("preset")).select_by_value("lightning-4")
    Select(element("lora-name")).select_by_value("lightx2v")
    set_value("lora-strength", 0.5)
    element("lora-add").click()
    common_fields("tiny", "a quick fox", steps=4)
    set_value("cfg_scale", 1)
    job = run_and_wait()
    assert job["state"] == "done", job
    record = get_json(f"/v1/jobs/{job['id']}")["parameters"]
    assert record["preset"] == "lightning-4", record
    assert record["loras"] == [{"name": "lightx2v.safetensors", "strength": 0.5}], record
    driver.find_element(By.CSS_SELECTOR, "#lora-list button").click()
    Select(element("preset")).select_by_value("")

    # img2img, the picture pasted.
    tab("img2img")
    give_pictures(None, [GRADIENT], how="paste")
    wait.until(lambda _: element("img2img-picture").is_displayed())
    common_fields("tiny", "a fox, watercolour")
    set_value("strength", 0.7)
    job = run_and_wait()
    assert job["state"] == "done", job
    expect_result_image()
    record = get_json(f"/v1/jobs/{job['id']}")
    assert record["parameters"]["task"] == "img2img" and record["parameters"]["strength"] == 0.7, record
    assert record["parameters"]["image"]["sha256"] == hashlib.sha256(GRADIENT).hexdigest()
    shot("img2img")

    # Edit: two pictures dropped, then reordered; the model switches to one that edits.
    tab("edit")
    assert Select(element("model")).first_selected_option.get_attribute("value") == "tiny-edit"
    give_pictures("edit-drop", [GRADIENT, CHECKER])
    wait.until(lambda _: len(driver.find_elements(By.CSS_SELECTOR, "#edit-pictures li")) == 2)
    driver.find_element(By.CSS_SELECTOR, '#edit-pictures li:first-child button[title="later"]').click()
    element("size-auto").click()
    common_fields("tiny-edit", "put the fox in picture 1 on picture 2")
    job = run_and_wait()
    assert job["state"] == "done", job
    expect_result_image()
    record = get_json(f"/v1/jobs/{job['id']}")
    sent = [image["sha256"] for image in record["parameters"]["images"]]
    assert sent == [hashlib.sha256(CHECKER).hexdigest(), hashlib.sha256(GRADIENT).hexdigest()], sent
    shot("edit")

    # Inpaint: a stroke painted across the middle; the mask the server recorded is the one the page sent.
    tab("inpaint")
    assert Select(element("model")).first_selected_option.get_attribute("value") == "tiny"
    give_pictures("inpaint-drop", [GRADIENT])
    wait.until(lambda _: element("mask-painter").is_displayed())
    canvas = element("mask-canvas")
    box = canvas.rect
    js("document.getElementById('brush-size').value = 30")
    ActionChains(driver).move_to_element_with_offset(canvas, -box["width"] // 4, 0).click_and_hold() \
        .move_by_offset(box["width"] // 2, 0).release().perform()
    common_fields("tiny", "a fox", size=32)
    job = run_and_wait()
    assert job["state"] == "done", job
    expect_result_image()
    record = get_json(f"/v1/jobs/{job['id']}")
    mask_png = base64.b64decode(js("return window.canvasTest.lastMaskPng"))
    assert record["parameters"]["mask"]["sha256"] == js("return window.canvasTest.lastMaskSha256")
    assert record["parameters"]["mask"]["sha256"] == hashlib.sha256(mask_png).hexdigest()
    width, height, channels, rows = png_pixels(mask_png)
    assert (width, height) == (32, 32)
    middle, corner = rows[16][16 * channels], rows[1][1 * channels]
    assert middle == 255 and corner == 0, (middle, corner)
    shot("inpaint")

    # Outpainting: the mask cleared, a margin on the right widens the picture.
    element("mask-clear").click()
    set_value("outpaint-right", 16)
    job = run_and_wait()
    assert job["state"] == "done", job
    expect_result_image(size=48)
    assert get_json(f"/v1/jobs/{job['id']}")["parameters"]["outpaint"] == [0, 0, 16, 0]
    set_value("outpaint-right", 0)

    # Cancel from the progress panel: a long job stops.
    tab("generate")
    common_fields("tiny", "a long job", steps=200, size=64)
    set_value("batch_count", 16)
    before = jobs_seen()
    element("run").click()
    wait.until(lambda _: "step" in element("job-state").text)
    # The preview and the ETA come while it runs.
    wait.until(lambda _: js("const p = document.getElementById('preview'); return !p.hidden && p.naturalWidth > 0"))
    wait.until(lambda _: "left" in element("job-eta").text)
    shot("progress")
    element("cancel").click()
    wait.until(lambda _: jobs_seen() > before)
    assert js("return window.canvasTest.jobs.at(-1).state") == "cancelled"

    # Cancel from the queue view.
    before = jobs_seen()
    element("run").click()
    wait.until(lambda _: "step" in element("job-state").text)
    tab("queue")
    wait.until(lambda _: "running" in element("queue-rows").text)
    shot("queue")
    driver.find_element(By.CSS_SELECTOR, "#queue-rows button").click()
    wait.until(lambda _: jobs_seen() > before)
    assert js("return window.canvasTest.jobs.at(-1).state") == "cancelled"

    # The memory panel polls and draws.
    tab("memory")
    # Two samples at least: the lines have a length.
    wait.until(lambda _: js("""const line = document.querySelector('#memory-chart polyline.host');
                               return line && line.getAttribute('points').split(' ').length >= 3"""))
    assert "in use" in element("memory-now").text
    wait.until(lambda _: element("memory-plan").text != "No job has run yet.")
    shot("memory")

    # After a reload the gallery shows the past jobs; their settings come back; one is deleted.
    open_page()
    open_gallery()
    assert len(driver.find_elements(By.CSS_SELECTOR, "#gallery .tile img")) == 6
    assert len(driver.find_elements(By.CSS_SELECTOR, "#gallery .tile.empty")) == 2  # the cancelled jobs
    shot("gallery")
    tile = f'#gallery .tile[data-job="{generate_id}"]'
    driver.find_element(By.CSS_SELECTOR, tile).click()
    assert "a red fox in the snow" in element("detail-meta").text
    element("detail-use").click()
    assert element("prompt").get_attribute("value") == "a red fox in the snow"
    assert element("steps").get_attribute("value") == "2"
    open_gallery()
    driver.find_element(By.CSS_SELECTOR, tile).click()
    element("detail-inpaint").click()
    wait.until(lambda _: element("mask-painter").is_displayed())
    open_gallery()
    driver.find_element(By.CSS_SELECTOR, tile).click()
    element("detail-delete").click()
    driver.switch_to.alert.accept()
    wait.until(lambda _: element("gallery").get_attribute("data-state") == "ready"
               and not driver.find_elements(By.CSS_SELECTOR, tile))
    try:
        get_json(f"/v1/jobs/{generate_id}")
        raise AssertionError("the deleted job is still there")
    except urllib.error.HTTPError as error:
        assert error.code == 404, error.code
    assert not list((DATA / "images").glob(f"{generate_id}*")), "the deleted job's images are still on the disk"

    console = [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]
    # The one request refused on purpose (steps 0), and nothing else.
    assert len(console) == 1 and "/v1/jobs" in console[0]["message"] and "400" in console[0]["message"], console

    # A server with a token: the page asks once, keeps it for the session, and runs a job with it.
    driver.get(GUARDED + "/")
    WebDriverWait(driver, 30).until(lambda _: driver.switch_to.alert)
    driver.switch_to.alert.send_keys(TOKEN)
    driver.switch_to.alert.accept()
    wait.until(lambda _: js("return window.canvasTest.ready === true"))
    assert js("return sessionStorage.getItem('canvas-token')") == TOKEN
    common_fields("tiny", "a guarded fox")
    job = run_and_wait()
    assert job["state"] == "done", job
    expect_result_image()
    console = [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]
    # The requests before the token was given were refused: those, and nothing else.
    assert console and all("401" in entry["message"] for entry in console), console
finally:
    driver.quit()
print("web UI tests passed")
