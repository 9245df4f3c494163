"""Start MiniStack with the workarounds applied (run by MiniStack's own Python, as a script).

Run as a file, not a module, so nothing of the project is put on the path that
MiniStack's Lambdas inherit: only this folder, for ``workarounds``.
"""
import sys

import workarounds

if __name__ == "__main__":
    applied = workarounds.apply()
    print(f"ministack workarounds applied: {', '.join(applied)}", flush=True)
    from ministack.app import main

    sys.exit(main())
