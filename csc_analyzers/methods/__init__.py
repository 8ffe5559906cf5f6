"""The attribution methods this project adds to innvestigate's.

Each module holds one method family; :mod:`csc_analyzers.factory` composes
them with relevance injection and residual support into the analyzers that
:func:`csc_analyzers.create_analyzer` builds, and
:mod:`csc_analyzers.registry` names them.

- :mod:`.rectgrad`: RectGrad (Kim et al., 2019).
- :mod:`.excitation`: Excitation Backprop and its contrastive form (eq. 16).
- :mod:`.contrastive`: Contrastive LRP (eq. 15).
- :mod:`.smoothgrad`: seeded SmoothGrad and Integrated Gradients.
- :mod:`.lrp_presets`: the LRP composite presets "CMP".
- :mod:`.deep_taylor`: Deep Taylor that explains negative logits too.
- :mod:`.deeplift_wrapper` and :mod:`.deeplift_convert`: DeepLIFT through the
  ``deeplift`` package (eq. 12-13) and the Keras-to-deeplift converter.

PatternNet and PatternAttribution live in :mod:`csc_analyzers.pattern` with
their pattern estimation.
"""
