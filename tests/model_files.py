"""Model files for the CLI tests: Python source a test writes to disk for ``rnnc compile MODEL.py``
and also executes itself for the eager reference (``namespace["model"]``)."""

#: conv -> GRU -> linear: a recurrent layer with non-recurrent ops around it (the whole-model engines)
CONV_GRU = """
import torch
class ConvGru(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(8, 16, 3, padding=1)
        self.gru = torch.nn.GRU(16, 24, batch_first=True)
        self.head = torch.nn.Linear(24, 3)
    def forward(self, x):
        y = torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)
        return self.head(self.gru(y)[0])
torch.manual_seed(0)
model = ConvGru().eval()
"""
