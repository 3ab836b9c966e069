# Tests of the linux component.
