namespace UsageBilling.Cli;

/// <summary>A failure the operator can fix (bad input, missing configuration): printed as one line, never with a stack trace.</summary>
/// <param name="message">The one line to print.</param>
/// <param name="exitCode">The process exit code.</param>
internal sealed class CliException(string message, int exitCode = ExitCodes.BadInput) : Exception(message)
{
    public int ExitCode { get; } = exitCode;
}

/// <summary>The exit codes of every command.</summary>
internal static class ExitCodes
{
    /// <summary>Done, nothing to worry about.</summary>
    public const int Ok = 0;

    /// <summary>The command ran and found a problem: dead reports after a flush, unexplained drift after a reconcile.</summary>
    public const int Finding = 1;

    /// <summary>Bad input or configuration: a malformed key, a missing connection string, an unknown option.</summary>
    public const int BadInput = 2;

    /// <summary>The database or Stripe could not be reached, or refused the request.</summary>
    public const int Unavailable = 3;

    /// <summary><c>flush</c>: everything it could send went out, but some reports wait for a retry after Stripe failed transiently.</summary>
    public const int InBackoff = 4;

    /// <summary><c>flush</c>: everything it could send went out, but another live flusher holds the lease on some due reports.</summary>
    public const int HeldElsewhere = 5;

    /// <summary>Interrupted (Ctrl+C).</summary>
    public const int Interrupted = 130;
}
