def find_model_folder():
    """The folder that holds the model's MLmodel file, under AZUREML_MODEL_DIR.

    Azure ML mounts a registered model at AZUREML_MODEL_DIR/<the folder name it was registered
    with>, often "model"; MLFLOW_MODEL_FOLDER (Azure's own variable) names it when set.
    """
    root = os.environ["AZUREML_MODEL_DIR"]
    if os.environ.get("MLFLOW_MODEL_FOLDER"):
        return os.path.join(root, os.environ["MLFLOW_MODEL_FOLDER"])
    found = glob.glob(os.path.join(root, "**", "MLmodel"), recursive=True)
    if not found:
        raise FileNotFoundError(f"No MLmodel file under AZUREML_MODEL_DIR ({root}).")
    # The shallowest one: a model folder may hold other MLflow models deeper down.
    return min((os.path.dirname(path) for path in found), key=lambda d: (d.count(os.sep), d))
