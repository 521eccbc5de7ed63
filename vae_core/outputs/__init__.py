"""What a run hands back: DataFrame tables (``tables``), the lab's figures (``lab_figures``),
evaluation and sweep figures (``evaluation_figures``), the lab's results of a model
(``results``), the HTML report (``report``, ``html_page``).
"""
