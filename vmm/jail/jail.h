// (filled in by the jail work)
#pragma once
