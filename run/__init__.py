"""A training run on the learner's machine: from the flags to the files it leaves behind.

What ``train_sac.py``, ``train_ddpg.py`` and ``evaluate.py`` are made of, so each script stays
the short story of its algorithm. It may import ``common``, ``vecenv``, ``host``, ``agents``,
``envs`` and ``farmlist``; never the farm side's packages nor the entry scripts.

- :mod:`run.config`: the flags every run shares (RunConfig), checked before any farm is asked;
- :mod:`run.main`: starting, the prompt's verbs (``r``, ``ev``, ...), finishing (SIGTERM, exit codes);
- :mod:`run.session`: a run once started: ``Session.train`` chunks, evaluation, resume;
- :mod:`run.progress`: the status line of one ``r`` while it trains;
- :mod:`run.runfiles`: the run directory's growing files (curves, episodes, config), written whole;
- :mod:`run.checkpoints`: the checkpoint interface (save, load newest past damaged ones), over
  :mod:`run.checkpoint_layout` (where files lie) and :mod:`run.checkpoint_writing` (writing
  so that a kill at any moment leaves the previous one loadable);
- :mod:`run.tblog`: TensorBoard event files;
- :mod:`run.curriculum`: a schedule of environment parameters over training;
- :mod:`run.render`: pictures and videos without a display;
- :mod:`run.evaluation`: the library behind ``evaluate.py`` (load, play, export, record).

Python 3.6 compatible (the learner of the py36 environment runs it).
"""
