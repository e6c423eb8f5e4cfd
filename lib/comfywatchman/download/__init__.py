"""Downloads: from the reviewed queue to a verified file in the right model folder.

``state`` keeps approvals and outcomes across search stages, ``policy`` decides what runs, ``paths`` keeps every
byte inside the model folders, ``fetch`` streams, resumes and verifies one file, ``runner`` runs a set of tasks,
``review`` lists the queue, ``cli`` and ``cycle`` are the two narrow integration points.
"""
