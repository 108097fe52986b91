"""Metric functions shared by the tasks (training and evaluation scores) and by evaluation and reporting.

    classification.py   label matching, softmax, accuracy / F1 / log-loss / ROC-AUC
    multilabel.py       F1 micro/macro, mAP, subset accuracy, Hamming loss; per-tag thresholds tuned for F1
    regression.py       RMSE, MAE, R²
    text.py             BLEU-1..4, ROUGE-L, CIDEr-D, exact match
    retrieval.py        Recall@1/5/10, MRR and median rank of paired embeddings, both directions

Plain functions over numpy arrays and strings: they import nothing else from polymodal.
"""
