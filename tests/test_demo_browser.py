"""The demo in a real browser: Debian's Chromium, headless, driven by Selenium.

.ci/run installs the ``chromium`` and ``chromium-driver`` packages; without them these tests fail (they never
skip). ``make screenshot`` runs it with NLP_RNN_SCREENSHOTS=docs to
refresh the README's screenshots.
"""

import os
import re
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,1000"]
SET_TEXT = """
const box = document.querySelector(arguments[0]);
Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, "value").set.call(box, arguments[1]);
box.dispatchEvent(new Event("input", {bubbles: true}));
"""
XSS = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script> an awful film'


@pytest.fixture(scope="module")
def browser():
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.fail("needs Debian's chromium and chromium-driver packages (apt-get install chromium chromium-driver;"
                    " `make test-fast` leaves out these slow tests)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))  # no driver download
    yield driver
    driver.quit()


def wait_for(browser, condition, timeout=60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.2).until(lambda _: condition())


def text_of(browser, selector):
    from selenium.webdriver.common.by import By

    found = browser.find_elements(By.CSS_SELECTOR, selector)
    return found[0].text if found else ""


def screenshot(browser, tmp_path, name):
    """Every run saves its screenshots; NLP_RNN_SCREENSHOTS=DIR also writes them there (make screenshot)."""
    browser.save_screenshot(str(tmp_path / name))
    if os.environ.get("NLP_RNN_SCREENSHOTS"):
        target = Path(os.environ["NLP_RNN_SCREENSHOTS"]) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tmp_path / name, target)


def classify(browser, text):
    from selenium.webdriver.common.by import By

    browser.execute_script(SET_TEXT, "#review textarea", text)
    browser.find_element(By.ID, "classify").click()


def open_tab(browser, title):
    """Click the tab; on a narrow screen Gradio keeps the tabs that do not fit behind its "More tabs" button."""
    from selenium.webdriver.common.by import By

    def find():
        shown = [t for t in browser.find_elements(By.CSS_SELECTOR, "button[role=tab]") if t.text == title]
        if shown:
            return shown
        more = browser.find_elements(By.CSS_SELECTOR, "button[aria-label='More tabs']")
        if more and more[0].is_displayed():
            if not browser.find_elements(By.CSS_SELECTOR, ".overflow-dropdown:not(.hide)"):
                more[0].click()
            return [t for t in browser.find_elements(By.CSS_SELECTOR, ".overflow-dropdown button")
                    if t.text == title and t.is_displayed()]
        return []

    wait_for(browser, find)[0].click()


def find_entities(browser, text):
    from selenium.webdriver.common.by import By

    browser.execute_script(SET_TEXT, "#news textarea", text)
    browser.find_element(By.ID, "find-entities").click()


def click_example(browser, box, start: str) -> None:
    """Click the example button whose text begins with ``start``; it fills ``box`` with that example."""
    from selenium.webdriver.common.by import By

    example = [b for b in browser.find_elements(By.CSS_SELECTOR, "button") if b.text.startswith(start)]
    example[0].click()
    wait_for(browser, lambda: box.get_property("value").startswith(start))


def entity_rows(browser):
    """The Entities table's rows as [type, entity, start, end] texts."""
    from selenium.webdriver.common.by import By

    cells = [[c.text for c in browser.find_elements(By.CSS_SELECTOR, f"#entity-table [role=gridcell][data-col='{i}']")]
             for i in range(4)]
    if len({len(column) for column in cells}) > 1:  # read while the table re-renders: no rows yet (callers wait)
        return []
    return [list(row) for row in zip(*cells, strict=True)]


def highlighted(browser):
    """The entities highlighted in the text: (text, background colour) of each coloured piece."""
    from selenium.webdriver.common.by import By

    return [(piece.text, piece.value_of_css_property("background-color"))
            for piece in browser.find_elements(By.CSS_SELECTOR, "#entities .textfield .highlighted")]


def test_sentiment_tab(browser, demo_url, tmp_path):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    browser.get(demo_url)
    review = wait_for(browser, lambda: browser.find_element(By.CSS_SELECTOR, "#review textarea"))
    review.send_keys("A gorgeous, moving film. I loved every minute of it.")  # typed, key by key
    browser.find_element(By.ID, "classify").click()
    wait_for(browser, lambda: text_of(browser, "#sentiment [data-testid=label-output-value]") == "positive")
    assert "loved" in text_of(browser, "#words")
    assert "gradient x input" in text_of(browser, "#review-notice")
    screenshot(browser, tmp_path, "demo-sentiment.png")

    classify(browser, "Two hours of my life I will never get back. Wooden acting and a plot full of holes.")
    wait_for(browser, lambda: text_of(browser, "#sentiment [data-testid=label-output-value]") == "negative")

    classify(browser, XSS)  # shown as text, never run
    wait_for(browser, lambda: "onerror" in text_of(browser, "#words"))
    assert browser.execute_script("return window.__pwned") is None
    assert not browser.find_elements(By.CSS_SELECTOR, "#words img, #words script")
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018

    classify(browser, "terrible " * 120_000)  # about 1 MB
    wait_for(browser, lambda: "Input cut to the first 5,000" in text_of(browser, "#review-notice"))

    classify(browser, "فيلم رائع 😀🎬\x00\x07 great")  # right-to-left script, emoji, control characters
    wait_for(browser, lambda: "رائع" in text_of(browser, "#words"))
    assert "control character(s) removed" in text_of(browser, "#review-notice")

    classify(browser, "   ")
    wait_for(browser, lambda: "Please enter a review" in text_of(browser, "body"))
    assert "Traceback" not in text_of(browser, "body")


def test_translate_tab(browser, demo_url, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(demo_url)
    open_tab(browser, "Translate")
    source = wait_for(browser, lambda: browser.find_element(By.CSS_SELECTOR, "#source textarea"))
    source.send_keys("Ein Mann fährt Fahrrad.")
    browser.find_element(By.ID, "translate").click()
    english = browser.find_element(By.CSS_SELECTOR, "#english textarea")
    wait_for(browser, lambda: english.get_property("value"))
    assert "man" in english.get_property("value").lower()
    candidates = "#nbest [role=gridcell][data-col='1']"  # the n-best table's translation column
    wait_for(browser, lambda: len(browser.find_elements(By.CSS_SELECTOR, candidates)) == 3)
    assert text_of(browser, candidates) == english.get_property("value")  # the best candidate first
    image = wait_for(browser, lambda: browser.find_element(By.CSS_SELECTOR, "#heatmap img"))
    loaded = "return arguments[0].complete && arguments[0].naturalWidth"
    wait_for(browser, lambda: browser.execute_script(loaded, image))  # the heatmap image really decoded
    assert image.get_attribute("src").startswith("data:image/")
    screenshot(browser, tmp_path, "demo.png")

    click_example(browser, source, "Zwei Hunde spielen")
    browser.find_element(By.ID, "translate").click()
    wait_for(browser, lambda: english.get_property("value") == "Two dogs play with an orange toy in tall grass.")

    browser.execute_script(SET_TEXT, "#source textarea", "")
    browser.find_element(By.ID, "translate").click()
    wait_for(browser, lambda: "Please enter a German sentence" in text_of(browser, "body"))


def test_entities_tab(browser, demo_url, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(demo_url)
    open_tab(browser, "Entities")
    news = wait_for(browser, lambda: browser.find_element(By.CSS_SELECTOR, "#news textarea"))
    news.send_keys("Angela Merkel met Emmanuel Macron in Paris .")  # typed, key by key
    browser.find_element(By.ID, "find-entities").click()
    wait_for(browser, lambda: ["LOC", "Paris", "37", "42"] in entity_rows(browser))
    rows = wait_for(browser, lambda: entity_rows(browser))
    assert ["PER", "Emmanuel Macron", "18", "33"] in rows
    pieces = highlighted(browser)
    assert [entity for _, entity, _, _ in rows] == [text for text, _ in pieces]  # each entity in the table is lit
    colours = {}  # entity type -> the background colours of its pieces
    for (kind, _, _, _), (_, colour) in zip(rows, pieces, strict=True):
        colours.setdefault(kind, set()).add(colour)
    assert all(len(shades) == 1 for shades in colours.values())  # one colour a type...
    assert len(set.union(*colours.values())) == len(colours) >= 2  # ...and a different one for each type
    assert text_of(browser, "#entities").count("Paris") == 1  # the text, shown once
    legend = text_of(browser, "#entities [data-testid='highlighted-text:category-legend']")
    assert legend.split() == ["PER", "ORG", "LOC", "MISC"]
    meanings = text_of(browser, "#entity-legend")
    assert all(f"{kind} {meaning}" in meanings
               for kind, meaning in [("PER", "person"), ("ORG", "organisation"), ("LOC", "location"),
                                     ("MISC", "miscellaneous")])
    assert "entities:" in text_of(browser, "#news-notice")
    screenshot(browser, tmp_path, "demo-entities.png")

    click_example(browser, news, "Manchester United beat Juventus")
    browser.find_element(By.ID, "find-entities").click()
    wait_for(browser, lambda: "Juventus" in [row[1] for row in entity_rows(browser)])

    find_entities(browser, XSS.replace("an awful film", "Emmanuel Macron visited Paris ."))  # shown as text, never run
    wait_for(browser, lambda: "onerror" in text_of(browser, "#entities"))
    assert browser.execute_script("return window.__pwned") is None
    assert not browser.find_elements(By.CSS_SELECTOR, "#entities img, #entities script, #entity-table img")

    find_entities(browser, "Paris is lovely in spring .\n" * 40_000)  # about 1 MB
    wait_for(browser, lambda: "Input cut to the first 5,000" in text_of(browser, "#news-notice"))

    find_entities(browser, "😀 Emmanuel\x00 Macron\x07 visited Paris 🎬")  # emoji, control characters
    wait_for(browser, lambda: "control character(s) removed" in text_of(browser, "#news-notice"))
    wait_for(browser, lambda: "Paris" in [row[1] for row in entity_rows(browser)])
    assert "😀" in text_of(browser, "#entities")

    find_entities(browser, "   ")
    wait_for(browser, lambda: "Please enter some English text" in text_of(browser, "body"))
    assert "Traceback" not in text_of(browser, "body")


SET_INPUT = """
const box = document.querySelector(arguments[0]);
Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, "value").set.call(box, arguments[1]);
box.dispatchEvent(new Event("input", {bubbles: true}));
box.dispatchEvent(new Event("change", {bubbles: true}));
"""


def displayed(browser, element_id: str) -> bool | None:
    """Whether the element is shown (False when gone from the page); None while the page re-renders it."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        return any(e.is_displayed() for e in browser.find_elements(By.ID, element_id))
    except StaleElementReferenceException:
        return None


def written(browser) -> str:
    return browser.execute_script("return document.querySelector('#written textarea').value")


def write_and_watch(browser) -> tuple[list[int], str]:
    """Click Write and read the text as it streams in: the lengths seen on the way, and the final text (once it
    has not changed for 3 seconds)."""
    import time

    from selenium.webdriver.common.by import By

    before = written(browser)
    browser.find_element(By.ID, "write").click()
    lengths, changed = [], time.monotonic()
    deadline = changed + 120
    while time.monotonic() < deadline and (not lengths or time.monotonic() - changed < 3):
        text = written(browser)
        if text != before and (not lengths or len(text) != lengths[-1]):
            lengths.append(len(text))
            changed = time.monotonic()
        time.sleep(0.02)
    return lengths, written(browser)


def test_generate_tab(browser, demo_url, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(demo_url)
    open_tab(browser, "Generate")
    wait_for(browser, lambda: browser.find_element(By.CSS_SELECTOR, "#prompt textarea"))
    [choice] = [c for c in browser.find_elements(By.CSS_SELECTOR, "#writer label") if "reviews-imdb" in c.text]
    choice.click()  # the review writer: its label appears
    wait_for(browser, lambda: displayed(browser, "write-label") is True)
    browser.execute_script(SET_TEXT, "#prompt textarea", "This movie")
    browser.execute_script(SET_INPUT, "#seed input", "7")
    lengths, first = write_and_watch(browser)
    assert first.startswith("This movie") and len(first) > 100
    # it grew in the page while it was written: a shorter text was on show before the final one (a fast machine
    # writes 300 tokens in about a second, so the page may show only one step on the way)
    assert len(lengths) >= 2 and lengths == sorted(lengths) and lengths[0] < len(first)
    screenshot(browser, tmp_path, "demo-generate.png")
    _, again = write_and_watch(browser)
    assert again == first  # the same seed, the same text
    browser.execute_script(SET_INPUT, "#seed input", "8")
    _, other = write_and_watch(browser)
    assert other != first and other.startswith("This movie")
    [choice] = [c for c in browser.find_elements(By.CSS_SELECTOR, "#writer label") if "shakespeare" in c.text]
    choice.click()
    wait_for(browser, lambda: displayed(browser, "write-label") is False)
    browser.execute_script(SET_TEXT, "#prompt textarea", "ROMEO:\n")
    _, verse = write_and_watch(browser)
    assert verse.startswith("ROMEO:\n") and len(verse) > 100
    assert "Traceback" not in text_of(browser, "body")


def test_models_tab(browser, demo_url, tmp_path):
    browser.get(demo_url)
    open_tab(browser, "Models")
    wait_for(browser, lambda: "bentrevett/multi30k" in text_of(browser, "body"))
    screenshot(browser, tmp_path, "demo-models.png")
    body = text_of(browser, "body")
    assert "stanfordnlp/imdb" in body and "nlp-rnn train configs/" in body
    assert "eriktks/conll2003" in body and "LSTM-CRF tagger" in body
    assert "karpathy/tiny_shakespeare" in body and "language model that writes" in body
    assert "<this folder>" not in body and "test (test)" not in body  # written for a visitor, not a developer


IN_VIEW = """
const rect = document.querySelector(arguments[0]).getBoundingClientRect();
return rect.top < window.innerHeight && rect.bottom > 0 && rect.left >= 0 && rect.right <= window.innerWidth + 1;
"""
LONG_GERMAN = "Ein älterer Mann mit einem roten Hut und eine junge Frau in einem blauen Kleid sitzen im Park ."
# 19 words and the end token: 20 columns of the heatmap


@pytest.fixture
def phone(browser):
    """The browser at a phone's size (390 x 844 CSS pixels), back to the desktop size afterwards."""
    browser.set_window_size(390, 844)
    yield browser
    browser.set_window_size(1400, 1000)


def test_at_phone_size_results_come_into_view_and_stay_readable(phone, demo_url, tmp_path, capfd):
    from selenium.webdriver.common.by import By

    from nlp_rnn.plots import ATTENTION_FONT_PT

    browser = phone
    browser.get(demo_url)
    review = wait_for(browser, lambda: browser.find_element(By.CSS_SELECTOR, "#review textarea"))
    review.send_keys("A gorgeous, moving film. I loved every minute of it.")
    browser.find_element(By.ID, "classify").click()
    wait_for(browser, lambda: text_of(browser, "#sentiment [data-testid=label-output-value]") == "positive")
    wait_for(browser, lambda: browser.execute_script(IN_VIEW, "#sentiment"))  # scrolled to the result
    screenshot(browser, tmp_path, "demo-phone-sentiment.png")

    open_tab(browser, "Translate")
    wait_for(browser, lambda: browser.find_element(By.CSS_SELECTOR, "#source textarea"))
    browser.execute_script(SET_TEXT, "#source textarea", LONG_GERMAN)
    browser.execute_script(SET_INPUT, "#beam-size input[type=number]", "10")
    n_best_range = "return document.querySelector('#n-best input[type=range]').max"
    wait_for(browser, lambda: browser.execute_script(n_best_range) == "10")  # the n-best slider follows the beam
    browser.execute_script(SET_INPUT, "#n-best input[type=number]", "5")
    browser.execute_script("window.scrollTo(0, 0)")
    browser.find_element(By.ID, "translate").click()
    english = browser.find_element(By.CSS_SELECTOR, "#english textarea")
    wait_for(browser, lambda: english.get_property("value"))
    wait_for(browser, lambda: browser.execute_script(IN_VIEW, "#english"))  # the English output, not the inputs
    score = "#nbest [role=columnheader]:last-child, #nbest th:last-child"
    header = wait_for(browser, lambda: [h for h in browser.find_elements(By.CSS_SELECTOR, score) if h.text])
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", header[0])
    visible = ("const r = arguments[0].getBoundingClientRect(); const hit = document.elementFromPoint("
               "r.left + r.width / 2, r.top + r.height / 2); return r.right <= window.innerWidth + 1 && "
               "(arguments[0] === hit || arguments[0].contains(hit))")
    assert "score" in header[0].text and browser.execute_script(visible, header[0])  # not behind a scrollbar
    scores = browser.find_elements(By.CSS_SELECTOR, "#nbest [role=gridcell][data-col='2']")
    assert len(scores) == 5 and all(re.fullmatch(r"-\d+\.\d\d", cell.text) for cell in scores)
    image = wait_for(browser, lambda: browser.find_element(By.CSS_SELECTOR, "#heatmap img"))
    wait_for(browser, lambda: browser.execute_script("return arguments[0].naturalWidth", image))
    shown, natural = browser.execute_script("return [arguments[0].clientWidth, arguments[0].naturalWidth]", image)
    label_px = ATTENTION_FONT_PT * 100 / 72 * shown / natural  # matplotlib's 100 dpi, as the page scales the image
    assert label_px >= 10, f"the heatmap's labels are {label_px:.1f} px high on a phone"
    screenshot(browser, tmp_path, "demo-phone-translate.png")

    open_tab(browser, "Entities")
    wait_for(browser, lambda: browser.find_element(By.CSS_SELECTOR, "#news textarea"))
    browser.execute_script(SET_TEXT, "#news textarea", "Angela Merkel met Emmanuel Macron in Paris .")
    browser.find_element(By.ID, "find-entities").click()
    wait_for(browser, lambda: ["LOC", "Paris", "37", "42"] in entity_rows(browser))
    screenshot(browser, tmp_path, "demo-phone-entities.png")

    open_tab(browser, "Generate")
    wait_for(browser, lambda: browser.find_element(By.CSS_SELECTOR, "#prompt textarea"))
    browser.execute_script(SET_INPUT, "#seed input", "3")
    write_and_watch(browser)
    screenshot(browser, tmp_path, "demo-phone-generate.png")

    open_tab(browser, "Models")
    wait_for(browser, lambda: "stanfordnlp/imdb" in text_of(browser, "body"))
    widest = browser.execute_script("return Math.max(...[...document.querySelectorAll('.model-card table')]"
                                    ".map(t => t.getBoundingClientRect().right))")
    assert widest <= browser.execute_script("return window.innerWidth") + 1  # tables scroll inside their card
    screenshot(browser, tmp_path, "demo-phone-models.png")

    capfd.readouterr()
    open_tab(browser, "Sentiment")
    classify(browser, "   ")  # an empty submit: a message at the box, the last result kept, no traceback
    wait_for(browser, lambda: "Please enter a review" in text_of(browser, "body"))
    assert text_of(browser, "#sentiment [data-testid=label-output-value]") == "positive"
    assert "Traceback" not in capfd.readouterr().err
