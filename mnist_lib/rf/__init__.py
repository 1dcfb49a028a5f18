"""The receptive-field calculator: its public face.

    >>> from mnist_lib.rf import receptive_field
    >>> from mnist_lib.models import Model_4
    >>> table = receptive_field(Model_4(), input_size=(1, 28, 28))
    >>> table.trunk.r_out            # RF of the last map before the pooling
    29
    >>> table.final.global_out       # the output pools the whole map
    True
    >>> table.headline.split("; ")  # doctest: +NORMALIZE_WHITESPACE
    ["RF 29 px (more than the 28x28 input), jump 4 px, at 'block2.1.0' (map 3x3)",
     "global from 'output.0' (AdaptiveAvgPool2d) onward"]
    >>> len(table), [row.r_out for row in table][:3]  # the rows print(table) shows
    (10, [3, 7, 11])

Command line: `python -m mnist_lib rf mnist_lib.models:Model_4 --input 1,28,28`
(or `mnist-rf`). How it works is in `field` (the walk over the graph and the
arithmetic); the other modules of this package are its parts.
"""

from .axis import POINTWISE, RFError, RFWarning, UnsupportedOpError, Window
from .effective import effective_rf, unit_box
from .field import receptive_field
from .table import COLUMNS, LEGEND, SHOWN, RFRow, RFTable, check_columns

__all__ = ["receptive_field", "effective_rf", "unit_box", "RFTable", "RFRow", "RFError",
           "RFWarning", "UnsupportedOpError", "Window", "POINTWISE", "COLUMNS",
           "LEGEND", "SHOWN", "check_columns"]
