# Tests of the agent component.
