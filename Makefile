# Quick start: `make demo` (serve the demo on the shipped models) and `make test`.
# Both create .venv when missing and install torch==2.13.0 first (the CPU wheel where one lies on disk),
# then this project with its dev extra, every package at the version constraints.txt records (`make lock`
# refreshes it; `make install CONSTRAINTS=` installs from pyproject.toml's ranges alone).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
CONSTRAINTS ?= constraints.txt
PIP_CONSTRAINTS := $(if $(CONSTRAINTS),-c $(CONSTRAINTS))
SHARED_DATA := $(wildcard ../shared/data/hf)
ifneq ($(SHARED_DATA),)
export NLP_RNN_DATA_DIR ?= $(abspath $(SHARED_DATA))
endif

.PHONY: install lock test test-fast demo screenshot load-test lint clean sentiment-model sentiment-scratch sentiment-ensemble sst2-teacher sst2-distilled rt-teacher rt-distilled translation-model imdb-lm sst2-lm rt-lm imdb-awd-lm sst2-awd-lm ner-vectors ner-model shakespeare-model reviews-model

$(BIN)/.installed: pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(PIP_CONSTRAINTS) torch==2.13.0
	$(BIN)/python -m pip install --quiet $(PIP_CONSTRAINTS) -e ".[dev]"
	touch $@

install: $(BIN)/.installed

# Refresh constraints.txt: torch==2.13.0 and nlp-rnn[dev] resolved afresh (newest versions within pyproject.toml's
# ranges) in a throwaway venv, every installed version recorded. Then `make test`, and commit it if that passes.
# torch is written without its local label (2.13.0, not 2.13.0+cpu) so the pin matches the CPU and CUDA builds.
lock:
	set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PYTHON) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/python" -m pip install --quiet --upgrade pip; \
	"$$tmp/venv/bin/python" -m pip install --quiet torch==2.13.0; \
	"$$tmp/venv/bin/python" -m pip install --quiet ".[dev]"; \
	{ echo "# The exact versions that torch==2.13.0 and nlp-rnn[dev] resolved to, which CI installs and tests ($$("$$tmp/venv/bin/python" -c 'import platform; print("Python", platform.python_version(), platform.system(), platform.machine())'))."; \
	  echo "# Used as pip -c constraints.txt by make install and .ci/run; refresh with make lock (README: Development)."; \
	  "$$tmp/venv/bin/python" -m pip freeze --exclude nlp-rnn | sed -E 's/^(torch==[^+]+)\+.*/\1/'; } > constraints.txt.new; \
	mv constraints.txt.new constraints.txt
	@echo "constraints.txt refreshed; run make test (a fresh .venv: make clean first) before committing it"

test: install
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

demo: install
	$(BIN)/nlp-rnn demo

# The demo under load: 50 concurrent clients, 500 requests over both tabs (figures in BENCHMARKS.md).
load-test: install
	$(BIN)/python bench/demo_load.py --clients 50 --requests 500

# Refresh the demo screenshots in docs/ (every tab, desktop and phone size): the browser test, saving them there.
screenshot: install
	NLP_RNN_SCREENSHOTS=docs $(BIN)/python -m pytest tests/test_demo_browser.py -p no:cacheprovider

# $(call train,OUT,CONFIG [OPTIONS]): nlp-rnn train CONFIG --out OUT, or, where OUT already holds that run or folder
# of seeds (make run again, or after an interruption), nlp-rnn train --resume --out OUT: it continues where it
# stopped, and a finished run is left as it is
train = if [ -f $(1)/training_state.pt ] || [ -f $(1)/seeds.json ]; then $(BIN)/nlp-rnn train --resume --out $(1); \
	else $(BIN)/nlp-rnn train $(2) --out $(1); fi

# Retrain, pack and score the shipped IMDB model (README: issue 19): the from-scratch model as a student of the IMDB
# ensemble shipped beside it, on the 50,000 unlabelled reviews (about 70 minutes on 2 threads of an AVX2 CPU).
sentiment-model: install
	$(call train,runs/imdb_distilled,configs/sentiment/imdb_distilled.yaml)
	$(BIN)/nlp-rnn pack runs/imdb_distilled demo/models/sentiment-imdb --fp16 --force
	$(BIN)/nlp-rnn evaluate demo/models/sentiment-imdb --split test
	$(BIN)/nlp-rnn pack demo/models/sentiment-imdb --card-only

# The from-scratch IMDB model (shipped until 2026-12-03; about 30 minutes on 2 CPU cores): the first member of the
# ensemble below.
sentiment-scratch: install
	$(call train,runs/imdb_bilstm,configs/sentiment/imdb_bilstm.yaml)
	$(BIN)/nlp-rnn evaluate runs/imdb_bilstm --split test

# Retrain, pack and score the IMDB ensemble shipped beside the classifier, which teaches it (README: issue 19): the
# from-scratch model and one run of adversarial training (seed 2; about 80 minutes on one thread of an AVX2 CPU
# beside another training).
sentiment-ensemble: sentiment-scratch
	$(call train,runs/imdb_at_s2,configs/sentiment/imdb_vat.yaml --set train.seed=2 \
	  --set train.virtual_adversarial.epsilon=0 --set data.unlabelled_split=null)
	$(BIN)/nlp-rnn evaluate runs/imdb_at_s2 --split test
	$(BIN)/nlp-rnn pack runs/imdb_bilstm demo/models/sentiment-imdb-ensemble --fp16 --force \
	  --ensemble runs/imdb_at_s2
	$(BIN)/nlp-rnn evaluate demo/models/sentiment-imdb-ensemble --split test
	$(BIN)/nlp-rnn pack demo/models/sentiment-imdb-ensemble --card-only

# The SST-2 and rotten_tomatoes students of configs/sentiment/{sst2,rotten_tomatoes}_distilled.yaml (README: issue 19).
# NAME-teacher: three seeds of the task's *_from_imdb.yaml, fine-tuned from the shipped IMDB model (about 10 minutes
# each for SST-2 on 2 CPU cores, a few for rotten_tomatoes), and for rotten_tomatoes three seeds from scratch
# (rotten_tomatoes_bilstm.yaml, a few minutes each), packed as one ensemble in runs/NAME_teacher, then scored on the
# config's test split (SST-2's official validation split; rotten_tomatoes' six-member ensemble is our best model there).
# NAME-distilled: the student, taught by it on the sentences of 20,000 unlabelled IMDB reviews (the teacher scores
# them once, about 5 minutes for three members, about twice that for six; then about 15 minutes of training for
# SST-2, about 10 for rotten_tomatoes at 128 sentences a step). make rt-distilled from no runs at all took 50 minutes on
# 2 cores with 32 sentences a step (2026-12-07); a rerun after an interruption continues where it stopped.
SEEDS := 0,1,2
FROM_IMDB_sst2 := sst2_from_imdb
FROM_IMDB_rt := rotten_tomatoes_from_imdb
SCRATCH_rt := rotten_tomatoes_bilstm
MEMBERS_rt := ,runs/rt_scratch/seed-0,runs/rt_scratch/seed-1,runs/rt_scratch/seed-2
DISTILLED_sst2 := sst2_distilled
DISTILLED_rt := rotten_tomatoes_distilled

sst2-teacher rt-teacher: %-teacher: install
	$(call train,runs/$*,configs/sentiment/$(FROM_IMDB_$*).yaml --seeds $(SEEDS))
	$(if $(SCRATCH_$*),$(call train,runs/$*_scratch,configs/sentiment/$(SCRATCH_$*).yaml --seeds $(SEEDS)))
	$(BIN)/nlp-rnn pack runs/$*/seed-0 runs/$*_teacher --ensemble runs/$*/seed-1,runs/$*/seed-2$(MEMBERS_$*) --force
	$(BIN)/nlp-rnn evaluate runs/$*_teacher --split test

sst2-distilled rt-distilled: %-distilled: install
	test -f runs/$*_teacher/ensemble.json || $(MAKE) $*-teacher
	$(call train,runs/$*_distilled,configs/sentiment/$(DISTILLED_$*).yaml)
	$(BIN)/nlp-rnn evaluate runs/$*_distilled --split test

# Retrain, pack and score the shipped Multi30k de->en translator (about 1 hour on 2 CPU cores).
translation-model: install
	$(call train,runs/multi30k_de_en_gru,configs/translation/multi30k_de_en_gru.yaml)
	$(BIN)/nlp-rnn pack runs/multi30k_de_en_gru demo/models/translate-de-en --fp16 --force
	for split in validation test; do for beam in 1 5; do \
	  $(BIN)/nlp-rnn evaluate demo/models/translate-de-en --split $$split --beam $$beam || exit 1; done; done
	$(BIN)/nlp-rnn pack demo/models/translate-de-en --card-only

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# The IMDB language model that sentiment/*_from_lm.yaml fine-tune (about 1 hour on 2 CPU cores; not shipped).
imdb-lm: install
	$(call train,runs/imdb_bilm,configs/pretraining/imdb_bilm.yaml)

# ULMFiT's second stage: that language model fine-tuned on SST-2's training text, which
# sentiment/sst2_from_sst2_lm.yaml starts from (about 7 minutes after imdb-lm). It, rt-lm and sst2-awd-lm make their
# language model first: trained, continued if it was interrupted, or left as it is when finished.
sst2-lm: install
	$(MAKE) imdb-lm
	$(call train,runs/sst2_bilm,configs/pretraining/sst2_bilm.yaml)

# The same second stage on rotten_tomatoes' training text, for sentiment/rotten_tomatoes_from_rt_lm.yaml.
rt-lm: install
	$(MAKE) imdb-lm
	$(call train,runs/rotten_tomatoes_bilm,configs/pretraining/rotten_tomatoes_bilm.yaml)

# The IMDB language model with AWD-LSTM's regularisers, which sentiment/imdb_ulmfit.yaml fine-tunes with
# ULMFiT's options (configs/pretraining/imdb_awd_lm.yaml says how long an epoch takes).
imdb-awd-lm: install
	$(call train,runs/imdb_awd_lm,configs/pretraining/imdb_awd_lm.yaml)

# ULMFiT's second stage on it: the AWD-LSTM language model fine-tuned on SST-2's training text (a few minutes)
sst2-awd-lm: install
	$(MAKE) imdb-awd-lm
	$(call train,runs/sst2_awd_lm,configs/pretraining/sst2_awd_lm.yaml)

# The 100-d English word vectors that configs/tagging/conll2003_ner_vectors.yaml starts from (about 2 minutes):
# PPMI + truncated SVD over 22.8M words of unlabelled English here (never CoNLL's validation or test text).
ner-vectors: runs/vectors/english-100d.txt
runs/vectors/english-100d.txt: | install
	$(BIN)/python -m nlp_rnn.word_vectors --out $@ --dim 100 --max-words 100000 --min-count 3 \
	  --text stanfordnlp/imdb:train+unsupervised:text --text stanfordnlp/sst2:train:sentence \
	  --text cornell-movie-review-data/rotten_tomatoes:train:text --text bentrevett/multi30k:train:en \
	  --text ../shared/data/hf-extra/eng-fra:train:en --text eriktks/conll2003:train:tokens

# Retrain, pack and score the shipped CoNLL-2003 named-entity tagger: an ensemble of four runs of one recipe
# (seeds 0 and 1 on train, seeds 0 and 1 on train+validation), two at a time on one thread each (about 1 hour 20
# minutes on 2 CPU cores); run again after an interruption, it continues each run where it stopped.
NER = configs/tagging/conll2003_ner.yaml --set train.num_threads=1 --set train.progress=false
NER_ALL = --set data.train_split=train+validation --set train.patience=null
ner-model: install
	$(call train,runs/ner_base,$(NER)) & a=$$!; \
	  $(call train,runs/ner_base_seed1,$(NER) --set train.seed=1) & b=$$!; wait $$a && wait $$b
	$(call train,runs/ner_trainval,$(NER) $(NER_ALL)) & a=$$!; \
	  $(call train,runs/ner_trainval_seed1,$(NER) $(NER_ALL) --set train.seed=1) & b=$$!; wait $$a && wait $$b
	$(BIN)/nlp-rnn pack runs/ner_base demo/models/ner-conll2003 --fp16 --force \
	  --ensemble runs/ner_base_seed1,runs/ner_trainval,runs/ner_trainval_seed1
	$(BIN)/nlp-rnn evaluate demo/models/ner-conll2003 --split test
	$(BIN)/nlp-rnn pack demo/models/ner-conll2003 --card-only

# Retrain, pack and score the shipped Tiny Shakespeare character model (about 70 minutes on one CPU thread).
shakespeare-model: install
	$(call train,runs/shakespeare_char,configs/generation/shakespeare_char.yaml)
	$(BIN)/nlp-rnn pack runs/shakespeare_char demo/models/shakespeare-char --fp16 --force
	$(BIN)/nlp-rnn evaluate demo/models/shakespeare-char --split validation+test
	$(BIN)/nlp-rnn evaluate demo/models/shakespeare-char --split test
	$(BIN)/nlp-rnn pack demo/models/shakespeare-char --card-only

# Retrain, pack and score the shipped label-conditioned IMDB review writer (about 55 minutes on one CPU thread),
# then its controllability with the shipped IMDB classifier.
reviews-model: install
	$(call train,runs/imdb_reviews,configs/generation/imdb_reviews.yaml)
	$(BIN)/nlp-rnn pack runs/imdb_reviews demo/models/reviews-imdb --fp16 --force
	$(BIN)/nlp-rnn evaluate demo/models/reviews-imdb --split test
	$(BIN)/nlp-rnn pack demo/models/reviews-imdb --card-only
	$(BIN)/python bench/review_control.py --writer demo/models/reviews-imdb
