"""The chat layer: the only place text becomes tokens (and generated tokens become messages).

Built on the model's own HF tokenizer and chat template; imports no model code.
"""

from eigen_jax.chat.conversation import (
    Conversation,
    ConversationError,
    Origin,
    Turn,
    render_dialogue,
)
from eigen_jax.chat.messages import MessageError
from eigen_jax.chat.template import ChatTemplate, TemplateError
from eigen_jax.chat.tool_parsers import (
    ParsedAssistant,
    ToolCall,
    ToolCallParseError,
    get_tool_parser,
)

__all__ = [
    "ChatTemplate",
    "Conversation",
    "ConversationError",
    "MessageError",
    "Origin",
    "ParsedAssistant",
    "TemplateError",
    "ToolCall",
    "ToolCallParseError",
    "Turn",
    "get_tool_parser",
    "render_dialogue",
]
