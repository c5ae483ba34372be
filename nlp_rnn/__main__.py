from nlp_rnn.cli import main

raise SystemExit(main())
