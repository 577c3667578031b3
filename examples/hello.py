import os
print("hello from rank", os.environ["RANK"], "of", os.environ["WORLD_SIZE"])
