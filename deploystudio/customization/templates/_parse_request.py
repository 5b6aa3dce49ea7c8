def parse_request(raw_data, input_schema):
    """The model input and params of a request, read as Azure ML's automatic MLflow scoring
    reads them; MLflow's own parser casts the values to the model's signature.

    {"input_data": ..., "params": {...}}: input_data is a table {"columns", "data", optional
    "index"} (a DataFrame), a list (one tensor) or an object of named lists (named tensors).
    """
    try:
        body = json.loads(raw_data)
    except RecursionError:
        # json recurses once per bracket: a deeply nested body would otherwise be a 500.
        raise ValueError(
            "The request is nested too deeply to read; send rows of values such as [[1.0, 2.0]]."
        ) from None
    if not isinstance(body, dict) or "input_data" not in body:
        raise ValueError('The request must be a JSON object with an "input_data" key.')
    input_data, params = body["input_data"], body.get("params")
    if params is not None and not isinstance(params, dict):
        raise ValueError('"params" must be a JSON object such as {"threshold": 0.7}.')
    keys = set(input_data) if isinstance(input_data, dict) else set()
    if {"columns", "data"} <= keys <= {"columns", "index", "data"}:
        return infer_and_parse_data({"dataframe_split": input_data}, input_schema), params
    if isinstance(input_data, (list, dict)):
        return infer_and_parse_data({"inputs": input_data}, input_schema), params
    raise ValueError('"input_data" must be a table, a list or an object of named lists.')
