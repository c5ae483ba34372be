"""The web demo's script, for Gradio and Hugging Face Spaces; the app itself is ``nlp_rnn.demo``.

    python demo/app.py [--sentiment DIR] [--translation DIR] [--entities DIR] [--generate DIR,DIR] [--host H]
                       [--port P] [--quantize] [--device D]

Serves the models in ``models/`` beside this file unless other run folders are given, so a copy of this folder
(this file and ``models/``) serves wherever nlp-rnn is installed.
"""

from pathlib import Path

from nlp_rnn.demo import script

MODELS = Path(__file__).resolve().parent / "models"

if __name__ == "__main__":
    script(models=MODELS)
