"""The Modelfile language: parse text to a typed AST, type PARAMETERs, format back to text.

>>> mf = parse('FROM llama3\\nPARAMETER temperature 0.7\\nSYSTEM "Be brief."\\n')
>>> typed_parameters(mf)
{'temperature': 0.7}
>>> print(format_modelfile(mf), end="")
FROM llama3
PARAMETER temperature 0.7
SYSTEM Be brief.
"""

from modelkit.modelfile.ast import (
    Adapter,
    Diagnostic,
    Draft,
    From,
    Instruction,
    License,
    Message,
    Modelfile,
    Parameter,
    ParamValue,
    Parser,
    Position,
    Renderer,
    Requires,
    Severity,
    System,
    Template,
    instruction_argument,
)
from modelkit.modelfile.formatter import format_instruction, format_modelfile, quote_value
from modelkit.modelfile.params import (
    DEPRECATED_PARAMETERS,
    PARAMETER_TYPES,
    ParameterError,
    format_parameter_value,
    parse_parameter_value,
    typed_parameters,
)
from modelkit.modelfile.parser import is_valid_requires, parse, parse_file

__all__ = [
    "DEPRECATED_PARAMETERS",
    "PARAMETER_TYPES",
    "Adapter",
    "Diagnostic",
    "Draft",
    "From",
    "Instruction",
    "License",
    "Message",
    "Modelfile",
    "ParamValue",
    "Parameter",
    "ParameterError",
    "Parser",
    "Position",
    "Renderer",
    "Requires",
    "Severity",
    "System",
    "Template",
    "format_instruction",
    "format_modelfile",
    "format_parameter_value",
    "instruction_argument",
    "is_valid_requires",
    "parse",
    "parse_file",
    "parse_parameter_value",
    "quote_value",
    "typed_parameters",
]
