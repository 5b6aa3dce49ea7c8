from deploystudio.environment import parse_requirements, python_version_from_env_files


def test_parses_pins_ranges_options_and_markers():
    text = "\n".join(
        [
            "# comment",
            "mlflow",
            "scikit-learn==1.1.2",
            "pandas>=2,<3",
            "numpy==1.*",
            "--extra-index-url https://example.invalid/simple",
            "torch==2.1.0 ; sys_platform == 'linux'",
            "not a requirement !!",
        ]
    )
    requirements, unparsed = parse_requirements(text)
    pins = {r.name: r.pinned_version for r in requirements}
    assert pins == {
        "mlflow": None,
        "scikit-learn": "1.1.2",
        "pandas": None,
        "numpy": None,
        "torch": "2.1.0",
    }
    assert unparsed == ["--extra-index-url https://example.invalid/simple", "not a requirement !!"]


def test_installed_version_is_read_for_installed_packages_only():
    requirements, _ = parse_requirements("pandas==0.0.1\nsurely-not-installed-pkg==1.0")
    installed = {r.name: r.installed_version for r in requirements}
    assert installed["pandas"] is not None and installed["pandas"] != "0.0.1"
    assert installed["surely-not-installed-pkg"] is None


def test_python_version_prefers_python_env_yaml():
    assert python_version_from_env_files("python: 3.12.3\n", "3.10.1") == "3.12.3"
    assert python_version_from_env_files(None, "3.10.1") == "3.10.1"
    assert python_version_from_env_files("[broken", None) is None
