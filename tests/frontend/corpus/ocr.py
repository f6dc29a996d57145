"""OCR models: CRNN text recognisers, where the recurrent "time" axis is the image width."""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from .common import Entry, gen, randn, seeded

# ---------------------------------------------------------------------------------------------------------------
# 2. CRNN (Shi et al.) as in meijieru/crnn.pytorch: seq-first BiLSTMs, log_softmax for CTC
# ---------------------------------------------------------------------------------------------------------------


class BidirectionalLSTM(nn.Module):  # meijieru/crnn.pytorch models/crnn.py
    def __init__(self, nIn, nHidden, nOut):
        super().__init__()

        self.rnn = nn.LSTM(nIn, nHidden, bidirectional=True)
        self.embedding = nn.Linear(nHidden * 2, nOut)

    def forward(self, input):
        recurrent, _ = self.rnn(input)
        T, b, h = recurrent.size()
        t_rec = recurrent.view(T * b, h)

        output = self.embedding(t_rec)  # [T * b, nOut]
        output = output.view(T, b, -1)

        return output


class CRNN(nn.Module):  # meijieru/crnn.pytorch models/crnn.py (channels shrunk)
    def __init__(self, imgH, nc, nclass, nh, leakyRelu=False):
        super().__init__()
        assert imgH % 16 == 0, "imgH has to be a multiple of 16"

        ks = [3, 3, 3, 3, 3, 3, 2]
        ps = [1, 1, 1, 1, 1, 1, 0]
        ss = [1, 1, 1, 1, 1, 1, 1]
        nm = [16, 32, 48, 48, 64, 64, 64]

        cnn = nn.Sequential()

        def convRelu(i, batchNormalization=False):
            nIn = nc if i == 0 else nm[i - 1]
            nOut = nm[i]
            cnn.add_module(f"conv{i}", nn.Conv2d(nIn, nOut, ks[i], ss[i], ps[i]))
            if batchNormalization:
                cnn.add_module(f"batchnorm{i}", nn.BatchNorm2d(nOut))
            if leakyRelu:
                cnn.add_module(f"relu{i}", nn.LeakyReLU(0.2, inplace=True))
            else:
                cnn.add_module(f"relu{i}", nn.ReLU(True))

        convRelu(0)
        cnn.add_module(f"pooling{0}", nn.MaxPool2d(2, 2))  # 64x16x64
        convRelu(1)
        cnn.add_module(f"pooling{1}", nn.MaxPool2d(2, 2))  # 128x8x32
        convRelu(2, True)
        convRelu(3)
        cnn.add_module(f"pooling{2}", nn.MaxPool2d((2, 2), (2, 1), (0, 1)))  # 256x4x16
        convRelu(4, True)
        convRelu(5)
        cnn.add_module(f"pooling{3}", nn.MaxPool2d((2, 2), (2, 1), (0, 1)))  # 512x2x16
        convRelu(6, True)  # 512x1x16

        self.cnn = cnn
        self.rnn = nn.Sequential(BidirectionalLSTM(nm[-1], nh, nh), BidirectionalLSTM(nh, nh, nclass))

    def forward(self, input):
        # conv features
        conv = self.cnn(input)
        b, c, h, w = conv.size()
        assert h == 1, "the height of conv must be 1"
        conv = conv.squeeze(2)
        conv = conv.permute(2, 0, 1)  # [w, b, c]

        # rnn features
        output = self.rnn(conv)

        # add log_softmax to converge output
        output = F.log_softmax(output, dim=2)

        return output


def _crnn_inputs(batch, length):
    g = gen("crnn_ocr", batch, length)
    return (randn(g, batch, 1, 32, length),)


# ---------------------------------------------------------------------------------------------------------------
# 2b. clovaai/deep-text-recognition-benchmark "None-VGG-BiLSTM-CTC"
# ---------------------------------------------------------------------------------------------------------------


class VGG_FeatureExtractor(nn.Module):  # clovaai/deep-text-recognition-benchmark modules/feature_extraction.py
    """FeatureExtractor of CRNN (https://arxiv.org/pdf/1507.05717.pdf)"""

    def __init__(self, input_channel, output_channel=64):
        super().__init__()
        self.output_channel = [int(output_channel / 8), int(output_channel / 4),
                               int(output_channel / 2), output_channel]  # [64, 128, 256, 512]
        self.ConvNet = nn.Sequential(
            nn.Conv2d(input_channel, self.output_channel[0], 3, 1, 1), nn.ReLU(True),
            nn.MaxPool2d(2, 2),  # 64x16x50
            nn.Conv2d(self.output_channel[0], self.output_channel[1], 3, 1, 1), nn.ReLU(True),
            nn.MaxPool2d(2, 2),  # 128x8x25
            nn.Conv2d(self.output_channel[1], self.output_channel[2], 3, 1, 1), nn.ReLU(True),  # 256x8x25
            nn.Conv2d(self.output_channel[2], self.output_channel[2], 3, 1, 1), nn.ReLU(True),
            nn.MaxPool2d((2, 1), (2, 1)),  # 256x4x25
            nn.Conv2d(self.output_channel[2], self.output_channel[3], 3, 1, 1, bias=False),
            nn.BatchNorm2d(self.output_channel[3]), nn.ReLU(True),  # 512x4x25
            nn.Conv2d(self.output_channel[3], self.output_channel[3], 3, 1, 1, bias=False),
            nn.BatchNorm2d(self.output_channel[3]), nn.ReLU(True),
            nn.MaxPool2d((2, 1), (2, 1)),  # 512x2x25
            nn.Conv2d(self.output_channel[3], self.output_channel[3], 2, 1, 0), nn.ReLU(True))  # 512x1x24

    def forward(self, input):
        return self.ConvNet(input)


class BatchFirstBidirectionalLSTM(nn.Module):  # clovaai/deep-text-recognition-benchmark modules/sequence_modeling.py
    def __init__(self, input_size, hidden_size, output_size):
        super().__init__()
        self.rnn = nn.LSTM(input_size, hidden_size, bidirectional=True, batch_first=True)
        self.linear = nn.Linear(hidden_size * 2, output_size)

    def forward(self, input):
        """
        input : visual feature [batch_size x T x input_size]
        output : contextual feature [batch_size x T x output_size]
        """
        self.rnn.flatten_parameters()
        recurrent, _ = self.rnn(input)  # batch_size x T x input_size -> batch_size x T x (2*hidden_size)
        output = self.linear(recurrent)  # batch_size x T x output_size
        return output


class VGGBiLSTMCTC(nn.Module):  # clovaai/deep-text-recognition-benchmark model.py, Trans=None, Pred=CTC
    def __init__(self, input_channel=1, output_channel=64, hidden_size=32, num_class=37):
        super().__init__()
        self.FeatureExtraction = VGG_FeatureExtractor(input_channel, output_channel)
        self.FeatureExtraction_output = output_channel  # int(imgH/16-1) * 512
        self.AdaptiveAvgPool = nn.AdaptiveAvgPool2d((None, 1))  # Transform final (imgH/16-1) -> 1
        self.SequenceModeling = nn.Sequential(
            BatchFirstBidirectionalLSTM(self.FeatureExtraction_output, hidden_size, hidden_size),
            BatchFirstBidirectionalLSTM(hidden_size, hidden_size, hidden_size),
        )
        self.SequenceModeling_output = hidden_size
        self.Prediction = nn.Linear(self.SequenceModeling_output, num_class)

    def forward(self, input):
        """Feature extraction stage"""
        visual_feature = self.FeatureExtraction(input)
        visual_feature = self.AdaptiveAvgPool(visual_feature.permute(0, 3, 1, 2))  # [b, c, h, w] -> [b, w, c, h]
        visual_feature = visual_feature.squeeze(3)

        """ Sequence modeling stage """
        contextual_feature = self.SequenceModeling(visual_feature)

        """ Prediction stage """
        prediction = self.Prediction(contextual_feature.contiguous())

        return prediction


def _vgg_inputs(batch, length):
    g = gen("vgg_bilstm_ctc", batch, length)
    return (randn(g, batch, 1, 32, length),)


ENTRIES = [
    Entry("crnn_ocr", seeded(lambda: CRNN(32, 1, 37, 32)), _crnn_inputs, ({0: "B", 3: "T"},), "ocr",
          ("conv2d", "batchnorm2d", "relu_inplace", "maxpool2d_asym_pad", "squeeze_height", "permute_seq_first",
           "bilstm_seq_first", "view_flatten", "log_softmax"), min_length=4),
    Entry("vgg_bilstm_ctc", seeded(VGGBiLSTMCTC), _vgg_inputs, ({0: "B", 3: "T"},), "ocr",
          ("conv2d", "batchnorm2d", "maxpool2d", "permute", "adaptiveavgpool2d_none", "squeeze", "bilstm",
           "flatten_parameters", "linear"), min_length=8),
]
