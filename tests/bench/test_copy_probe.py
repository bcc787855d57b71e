"""copy_probe.copy_positions: which assistant tokens count as copied from the conversation."""

import numpy as np

from bench.copy_probe import copy_positions


def test_copy_positions_hand_built():
    #          sys  user: Vera 59801 the | asst: Vera the 59801 Ben | tool: Ben | asst: Ben
    tokens = np.array([1, 10, 11, 12, 10, 12, 11, 13, 13, 13])
    assistant = np.array([0, 0, 0, 0, 1, 1, 1, 1, 0, 1], bool)
    context = np.array([0, 1, 1, 1, 0, 0, 0, 0, 1, 0], bool)
    is_entity = lambda i: i != 12  # "the" is not an entity
    got = copy_positions(tokens, assistant, context, prompt_ids={1}, is_entity=is_entity)
    # Vera and 59801 were shown by the user; "the" is no entity; Ben at 7 was not shown yet
    # (its first context occurrence is the tool result after it), Ben at 9 was.
    np.testing.assert_array_equal(np.flatnonzero(got), [4, 6, 9])
    # an id the system prompt or tool schemas contain is templated, not copied
    got = copy_positions(tokens, assistant, context, prompt_ids={1, 10}, is_entity=is_entity)
    np.testing.assert_array_equal(np.flatnonzero(got), [6, 9])
