"""The served demo, called over HTTP through Gradio's queue with gradio_client, as an API user would."""

import itertools

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError, ValidationError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(demo_url):
    return Client(demo_url, verbose=False)


def test_classify_endpoint(client):
    scores, pieces, notice = client.predict("A gorgeous, moving film. I loved it.", api_name="/classify")
    assert scores["label"] == "positive"
    assert sum(c["confidence"] for c in scores["confidences"]) == pytest.approx(1.0, abs=1e-4)
    assert "".join(p["token"] for p in pieces) == "A gorgeous, moving film. I loved it."
    assert "gradient x input" in notice  # the shipped model max-pools: labelled as such


def test_translate_endpoint(client):
    english, nbest, heatmap, notice = client.predict("Ein Mann fährt Fahrrad.", 5, 3, api_name="/translate")
    assert "man" in english.lower() and ("bike" in english.lower() or "bicycle" in english.lower())
    assert [row[1] for row in nbest["data"]][0] == english and len(nbest["data"]) == 3
    assert heatmap["type"] == "matplotlib" and heatmap["plot"].startswith("data:image/")


def test_errors_reach_the_client_as_messages(client):
    # an empty text fails the event's validator before the model runs: the client gets its message
    with pytest.raises(ValidationError, match="Please enter a review"):
        client.predict("   ", api_name="/classify")
    with pytest.raises(ValidationError, match="Please enter a German sentence"):
        client.predict("", 1, 1, api_name="/translate")


def test_write_endpoint_streams(client):
    job = client.submit("shakespeare-char", "ROMEO:\n", None, 0.8, 0, 0.95, 80, 5, 0.0, api_name="/write")
    final, notice = job.result()
    steps = [text for text, _ in job.outputs()]
    assert len(steps) > 10 and all(later.startswith(earlier) for earlier, later in itertools.pairwise(steps))
    assert final == steps[-1] and final.startswith("ROMEO:\n") and len(final) > len("ROMEO:\n") + 40
    again, _ = client.predict("shakespeare-char", "ROMEO:\n", None, 0.8, 0, 0.95, 80, 5, 0.0, api_name="/write")
    assert again == final  # the same seed, the same text
    review, _ = client.predict("reviews-imdb", "This movie", "pos", 0.8, 0, 0.95, 60, 5, 2.0, api_name="/write")
    assert review.startswith("This movie") and len(review) > len("This movie") + 40
    with pytest.raises(AppError, match="less than minimum value"):  # the slider bounds it
        client.predict("shakespeare-char", "ROMEO:", None, 0.0, 0, 0.95, 20, 5, 0.0, api_name="/write")
