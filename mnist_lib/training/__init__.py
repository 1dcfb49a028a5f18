"""The parts behind `mnist_lib.train`, one module a job:

- `history`: `History`, what `fit` returns (one record an epoch, saved as JSON);
- `progress`: an epoch's progress bar (or one line an epoch in a book build);
- `checkpoint`: `save_checkpoint`, `load_checkpoint` (any model), `Classifier`;
- `cuda_graphs`: `fit`'s own step captured as CUDA graphs and replayed, on a GPU.

The loop itself is `mnist_lib.train.fit`; the public names are imported from
`mnist_lib` (`from mnist_lib import History, save_checkpoint`).
"""
