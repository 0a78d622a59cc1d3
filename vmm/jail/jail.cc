// (filled in by the jail work)
namespace wisp::jail {}
