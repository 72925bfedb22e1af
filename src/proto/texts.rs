//! Every fixed text a reply carries, by name: one place to read (and one day to
//! translate) what the server says, as Ergo's numerics and Sable's messages do.
//! Handlers name the text; the numeric and its parameters stay with the handler,
//! which knows them. Texts that carry values are built where they are sent.

pub const ACCOUNT_SUCCESSFULLY_REGISTERED: &str = "Account successfully registered";
pub const ADMINISTRATIVE_INFO: &str = "Administrative info";
pub const ANOTHER_AUTHENTICATION_IS_IN_PROGRESS: &str = "Another authentication is in progress";
pub const ARE_AVAILABLE_SASL_MECHANISMS: &str = "are available SASL mechanisms";
pub const ARE_SUPPORTED_BY_THIS_SERVER: &str = "are supported by this server";
pub const BACKUP_THIS_SERVER_KEEPS_NO_STORE: &str = "BACKUP: this server keeps no store";
pub const BAD_CHANNEL_MASK: &str = "Bad Channel Mask";
pub const CANNOT_JOIN_CHANNEL_B: &str = "Cannot join channel (+b)";
pub const CANNOT_JOIN_CHANNEL_I: &str = "Cannot join channel (+i)";
pub const CANNOT_JOIN_CHANNEL_K: &str = "Cannot join channel (+k)";
pub const CANNOT_JOIN_CHANNEL_L: &str = "Cannot join channel (+l)";
pub const CANNOT_SEND_TO_CHANNEL: &str = "Cannot send to channel";
pub const CANT_CHANGE_MODE_FOR_OTHER_USERS: &str = "Can't change mode for other users";
pub const CHANNELS_FORMED: &str = "channels formed";
pub const CHANNEL_LIST_IS_FULL: &str = "Channel list is full";
pub const END_OF_INFO_LIST: &str = "End of INFO list";
pub const END_OF_INVITE_LIST: &str = "End of /INVITE list";
pub const END_OF_LINKS_LIST: &str = "End of /LINKS list";
pub const END_OF_LIST: &str = "End of /LIST";
pub const END_OF_MONITOR_LIST: &str = "End of MONITOR list";
pub const END_OF_MOTD_COMMAND: &str = "End of /MOTD command.";
pub const END_OF_NAMES_LIST: &str = "End of /NAMES list.";
pub const END_OF_STATS_REPORT: &str = "End of /STATS report";
pub const END_OF_WHOIS_LIST: &str = "End of /WHOIS list";
pub const END_OF_WHOWAS: &str = "End of WHOWAS";
pub const END_OF_WHO_LIST: &str = "End of WHO list";
pub const ERRONEOUS_NICKNAME: &str = "Erroneous nickname";
pub const INPUT_LINE_WAS_TOO_LONG: &str = "Input line was too long";
pub const INVALID_CAP_COMMAND: &str = "Invalid CAP command";
pub const INVALID_MODE_PARAMETER: &str = "Invalid mode parameter";
pub const INVALID_READ_MARKER_TARGET: &str = "Invalid target";
pub const INVALID_READ_MARKER_TIMESTAMP: &str = "Invalid timestamp";
pub const IS_ALREADY_ON_CHANNEL: &str = "is already on channel";
pub const IS_AN_IRC_OPERATOR: &str = "is an IRC operator";
pub const IS_AN_UNKNOWN_SNOMASK_LETTER_KNOWN_BCFKO: &str =
    "is an unknown snomask letter (known: bcfko)";
pub const IS_LOGGED_IN_AS: &str = "is logged in as";
pub const IS_NOW_YOUR_DISPLAYED_HOST: &str = "is now your displayed host";
pub const IS_UNKNOWN_MODE_CHAR_TO_ME: &str = "is unknown mode char to me";
pub const IS_USING_A_SECURE_CONNECTION: &str = "is using a secure connection";
pub const MESSAGES_COULD_NOT_BE_RETRIEVED: &str = "Messages could not be retrieved";
pub const MESSAGE_REJECTED_IT_IS_NOT_VALID_UTF: &str = "Message rejected, it is not valid UTF-8";
pub const MISSING_PARAMETERS: &str = "Missing parameters";
pub const MONITOR_LIST_IS_FULL: &str = "Monitor list is full.";
pub const MOTD_FILE_IS_MISSING: &str = "MOTD File is missing";
pub const NICKNAME_IS_ALREADY_IN_USE: &str = "Nickname is already in use";
pub const NOT_ENOUGH_PARAMETERS: &str = "Not enough parameters";
pub const NO_ADMINISTRATIVE_INFO_AVAILABLE: &str = "No administrative info available";
pub const NO_NICKNAME_GIVEN: &str = "No nickname given";
pub const NO_ORIGIN_SPECIFIED: &str = "No origin specified";
pub const NO_O_LINES_FOR_YOUR_HOST: &str = "No O-lines for your host";
pub const NO_SUCH_CHANNEL: &str = "No such channel";
pub const NO_SUCH_NICK_CHANNEL: &str = "No such nick/channel";
pub const NO_SUCH_SERVER: &str = "No such server";
pub const NO_TEXT_TO_SEND: &str = "No text to send";
pub const NO_TOPIC_IS_SET: &str = "No topic is set";
pub const OPERATOR_S_ONLINE: &str = "operator(s) online";
pub const PASSWORD_INCORRECT: &str = "Password incorrect";
pub const PERMISSION_DENIED_ONLY_OPERATORS_MAY_SET_USER: &str =
    "Permission Denied - Only operators may set user mode s";
pub const PERMISSION_DENIED_YOURE_NOT_AN_IRC_OPERATOR: &str =
    "Permission Denied- You're not an IRC operator";
pub const READ_MARKERS_NEED_AN_ACCOUNT: &str =
    "You must be logged in to an account to set read markers";
pub const REAL_NAME_IS_EMPTY_OR_TOO_LONG: &str = "Real name is empty or too long";
pub const REHASHING: &str = "Rehashing";
pub const REHASH_THIS_SERVER_WAS_STARTED_WITHOUT_SETTINGS: &str =
    "REHASH: this server was started without settings to reload";
pub const RINGCHAT_IRC_SERVER_ON_IO_URING: &str = "ringchat IRC server on io_uring";
pub const SASL_AUTHENTICATION_ABORTED: &str = "SASL authentication aborted";
pub const SASL_AUTHENTICATION_FAILED: &str = "SASL authentication failed";
pub const SASL_AUTHENTICATION_SUCCESSFUL: &str = "SASL authentication successful";
pub const SASL_MESSAGE_TOO_LONG: &str = "SASL message too long";
pub const SECONDS_IDLE_SIGNON_TIME: &str = "seconds idle, signon time";
pub const SERVER_NOTICE_MASK: &str = "Server notice mask";
pub const THAT_NICK_IS_REGISTERED_AND_YOU_DID: &str =
    "That nick is registered and you did not log in to its account; you are now known by this one";
pub const THERE_WAS_NO_SUCH_NICKNAME: &str = "There was no such nickname";
pub const THEY_ARENT_ON_THAT_CHANNEL: &str = "They aren't on that channel";
pub const THE_ANSWER_DID_NOT_COME_IN_TIME: &str = "The answer did not come in time; try again";
pub const THE_READ_TIMESTAMP_COULD_NOT_BE_SET: &str = "The read timestamp could not be set";
pub const TOO_MANY_KNOCKS_CONNECTION: &str = "Too many KNOCKs (connection)";
pub const TOO_MANY_TARGETS: &str = "Too many targets";
pub const UNKNOWN_COMMAND: &str = "Unknown command";
pub const UNKNOWN_CONNECTION_S: &str = "unknown connection(s)";
pub const UNKNOWN_MODE_FLAG: &str = "Unknown MODE flag";
pub const USERS_NAME: &str = "Users  Name";
pub const WEBIRC_IP_NOT_VALID: &str = "proxied IP is not valid";
pub const WEBIRC_NOT_USABLE: &str =
    "WEBIRC command is not usable from your address or incorrect password given";
pub const YOURE_NOT_CHANNEL_OPERATOR: &str = "You're not channel operator";
pub const YOURE_NOT_ON_THAT_CHANNEL: &str = "You're not on that channel";
pub const YOUR_KNOCK_HAS_BEEN_DELIVERED: &str = "Your KNOCK has been delivered";
pub const YOU_ARE_NOW_AN_IRC_OPERATOR: &str = "You are now an IRC operator";
pub const YOU_ARE_NOW_LOGGED_OUT: &str = "You are now logged out";
pub const YOU_ARE_NO_LONGER_MARKED_AS_BEING: &str = "You are no longer marked as being away";
pub const YOU_HAVE_ALREADY_AUTHENTICATED_USING_SASL: &str =
    "You have already authenticated using SASL";
pub const YOU_HAVE_BEEN_MARKED_AS_BEING_AWAY: &str = "You have been marked as being away";
pub const YOU_HAVE_JOINED_TOO_MANY_CHANNELS: &str = "You have joined too many channels";
pub const YOU_HAVE_NOT_REGISTERED: &str = "You have not registered";
pub const YOU_MAY_NOT_REREGISTER: &str = "You may not reregister";
