from disviz.cli import main

raise SystemExit(main())
