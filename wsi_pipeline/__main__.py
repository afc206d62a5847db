import sys

from wsi_pipeline.cli import main

sys.exit(main())
