"""Re-take docs/app.png: the page of app.py at work on the public-domain example, in headless Chromium.

    apt-get install chromium chromium-driver             # Debian's browser and its driver
    pip install -r requirements-app.txt 'selenium>=4.30,<5'
    python docs/app_screenshot.py                        # the model in backup/ -> docs/app.png
    python docs/app_screenshot.py --BACKUP_DIR=runs/a/backup --out /tmp/page.png

The committed picture used the 64x64 UTKFace models of QUALITY.md's study ("Do the
discriminators help?"): run adv-64-a1e4's backup, whose pretrained checkpoint is phase 1 at
minute 37.6 and whose newest is 20 minutes of the default adversarial setting after it:

    python docs/app_screenshot.py --BACKUP_DIR=/work/runs/utk64/adv-64-a1e4/backup

Without real faces, a stand-in from the synthetic demo set (about 11 minutes on 2 cores):

    S="--IMAGE_SIZE=64 --LOCAL_SIZE=32 --HOLE_MIN=12 --HOLE_MAX=24"; R=experiments/runs/app
    D="--NPY_DIR=$R/npy --BACKUP_DIR=$R/backup --OUTPUT_DIR=$R/output"
    python to_npy.py --demo 500 $S $D
    python train.py --fresh $S $D --PRETRAIN_EPOCH=3 --D_EPOCH=1 --MAX_EPOCH=5
    python docs/app_screenshot.py --BACKUP_DIR=$R/backup

It starts python app.py on a free port of 127.0.0.1, uploads the photo, paints a stroke over
the mouth, presses Complete, waits for the three columns, saves the screenshot and stops the
page. tests/test_app.py drives the browser with the same functions. Nothing is downloaded:
Selenium is pointed at Debian's /usr/bin/chromium and /usr/bin/chromedriver.
"""
import argparse
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM, CHROMEDRIVER = '/usr/bin/chromium', '/usr/bin/chromedriver'
PHOTO = os.path.join(ROOT, 'docs', 'examples', 'astronaut.png')
# The stroke painted on the 128x128 example: photo pixels (x, y), over the mouth and chin.
STROKE = [(44, 86), (64, 92), (84, 86)]
BRUSH_SIZE = 9  # brush radius on the page's slider, photo px
BUSY = r'^\s*(queue:.*|processing.*|[\d.]+s(/[\d.]+s)?)\s*$'  # a line of Gradio's progress timer


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def start_server(args, env=None, timeout=120):
    """python app.py *args on a free port -> (process, url) once the page answers.

    Its output goes to a pipe read only on failure; the page prints little after it starts.
    """
    port = free_port()
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, 'app.py'), *args, f'--port={port}'],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f'http://127.0.0.1:{port}/'
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f'app.py stopped with status {process.returncode}:\n{process.stdout.read()}')
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return process, url
        except OSError:
            time.sleep(0.5)
    stop_server(process)
    raise RuntimeError(f'app.py did not answer at {url} within {timeout} s:\n{process.stdout.read()}')


def stop_server(process):
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def browser(width=1400, height=1000):
    """Headless Debian Chromium through Debian's chromedriver (Selenium downloads nothing)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu',
                 f'--window-size={width},{height}', '--hide-scrollbars'):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def _message(driver):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, 'message').text.strip()


def _new_message(driver, before, timeout):
    """Wait for the page's next message: not `before`, not empty, no progress timer; return it."""
    from selenium.webdriver.support.ui import WebDriverWait

    def ready(d):
        text = _message(d)
        return text not in ('', before) and not re.search(BUSY, text, re.M)

    WebDriverWait(driver, timeout).until(ready)
    return _message(driver)


def upload(driver, url, photo, timeout=60):
    """Open the page and upload a photo; returns the page's message about it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    chooser = '#photo input[type=file]'
    WebDriverWait(driver, timeout).until(lambda d: d.find_elements(By.CSS_SELECTOR, chooser))
    before = _message(driver)
    driver.find_element(By.CSS_SELECTOR, chooser).send_keys(os.path.abspath(photo))
    return _new_message(driver, before, timeout)


def pick_example(driver, timeout=60):
    """Click the page's example photo (it must be open); returns the page's message about it."""
    from selenium.webdriver.common.by import By

    before = _message(driver)
    driver.find_element(By.XPATH, '//button[contains(., "astronaut.png")]').click()
    return _new_message(driver, before, timeout)


def paint(driver, stroke, photo_size, brush=None, rectangle=False, timeout=60):
    """Drag the mouse through photo pixels (x, y) on the editor, with the brush radius `brush`."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from selenium.webdriver.support.ui import WebDriverWait

    # The editor loads the photo after the message comes; Gradio shows a timer until it is drawn.
    editor = driver.find_element(By.ID, 'editor')
    WebDriverWait(driver, timeout).until(lambda d: not re.search(BUSY, editor.text, re.M))
    time.sleep(0.5)
    if brush:
        driver.find_element(By.CSS_SELECTOR, '#editor [aria-label="Brush Size"]').click()
        slider = driver.find_element(By.CSS_SELECTOR, '#editor input[type=range]')
        driver.execute_script(
            "const set = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;"
            "set.call(arguments[0], arguments[1]);"
            "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));", slider, brush)
        driver.find_element(By.CSS_SELECTOR, '#editor [aria-label="Brush Size"]').click()
    if rectangle:
        driver.find_element(By.XPATH, '//*[@id="shape"]//label[contains(., "rectangle")]').click()
    canvas = [c for c in driver.find_elements(By.CSS_SELECTOR, '#editor canvas') if c.is_displayed()][-1]
    # The editor centres the photo on its canvas at the zoom it shows (e.g. "225%").
    zoom = driver.find_elements(By.CSS_SELECTOR, '#editor .zoom-number span')
    found = re.match(r'(\d+)%', zoom[0].text) if zoom else None
    width, height = photo_size
    scale = (int(found.group(1)) / 100 if found
             else min(canvas.size['width'] / width, canvas.size['height'] / height))
    offsets = [(round((x - width / 2) * scale), round((y - height / 2) * scale)) for x, y in stroke]
    actions = ActionChains(driver).move_to_element_with_offset(canvas, *offsets[0]).click_and_hold()
    for (x0, y0), (x1, y1) in zip(offsets, offsets[1:]):
        for step in range(1, 6):  # small moves, so the stroke is continuous
            x, y = x0 + (x1 - x0) * step // 5, y0 + (y1 - y0) * step // 5
            actions.move_to_element_with_offset(canvas, x, y)
    actions.release().perform()


def complete(driver, timeout=120):
    """Press Complete and wait for the page's answer: its message."""
    from selenium.webdriver.common.by import By

    before = _message(driver)
    driver.find_element(By.ID, 'complete').click()
    return _new_message(driver, before, timeout)


def result_sizes(driver):
    """(width, height) of the image shown in each result column, None where there is none."""
    from selenium.webdriver.common.by import By

    sizes = []
    for i in range(3):
        images = driver.find_elements(By.CSS_SELECTOR, f'#result{i} img')
        sizes.append(driver.execute_script('return [arguments[0].naturalWidth, arguments[0].naturalHeight]',
                                           images[0]) if images else None)
    return sizes


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default=os.path.join(ROOT, 'docs', 'app.png'), help='screenshot file')
    parser.add_argument('--photo', default=PHOTO, help='photo to upload (default: the example)')
    args, app_args = parser.parse_known_args(argv)  # the rest (--BACKUP_DIR=...) goes to app.py
    process, url = start_server(app_args)
    driver = browser()
    try:
        import cv2
        height, width = cv2.imread(args.photo).shape[:2]
        print(upload(driver, url, args.photo))
        stroke = [(x * width // 128, y * height // 128) for x, y in STROKE]
        paint(driver, stroke, (width, height), brush=max(1, BRUSH_SIZE * min(width, height) // 128))
        print(complete(driver))
        time.sleep(1)  # the result images fade in
        driver.save_screenshot(args.out)
        print(f'wrote {args.out}')
    finally:
        driver.quit()
        stop_server(process)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
