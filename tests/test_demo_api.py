"""The served demo, called over HTTP through Gradio's queue with gradio_client, as an API user would."""

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(demo_url):
    return Client(demo_url, verbose=False)


def test_classify_endpoint(client):
    scores, pieces, notice = client.predict("A gorgeous, moving film. I loved it.", api_name="/classify")
    assert scores["label"] == "pos"
    assert sum(c["confidence"] for c in scores["confidences"]) == pytest.approx(1.0, abs=1e-4)
    assert "".join(p["token"] for p in pieces) == "A gorgeous, moving film. I loved it."
    assert "gradient x input" in notice  # the shipped model max-pools: labelled as such


def test_translate_endpoint(client):
    english, nbest, heatmap, notice = client.predict("Ein Mann fährt Fahrrad.", "beam", 5, 3, api_name="/translate")
    assert "man" in english.lower() and ("bike" in english.lower() or "bicycle" in english.lower())
    assert [row[1] for row in nbest["data"]][0] == english and len(nbest["data"]) == 3
    assert heatmap["type"] == "matplotlib" and heatmap["plot"].startswith("data:image/")


def test_errors_reach_the_client_as_messages(client):
    with pytest.raises(AppError, match="Please enter a review"):
        client.predict("   ", api_name="/classify")
    with pytest.raises(AppError, match="Please enter a German sentence"):
        client.predict("", "greedy", 1, 1, api_name="/translate")
