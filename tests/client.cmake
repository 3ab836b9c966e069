# Tests of the client component.
