from synchformer.cli import main

raise SystemExit(main())
