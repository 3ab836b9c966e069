# Tests of the daemon component.
