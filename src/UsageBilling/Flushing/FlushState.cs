namespace UsageBilling;

/// <summary>What this process's flusher last did, for the health check and operators.</summary>
internal sealed class FlushState
{
    private readonly Lock _gate = new();

    /// <summary>When the last flush finished, if any.</summary>
    public DateTimeOffset? LastCompletedAt { get; private set; }

    /// <summary>What the last flush did.</summary>
    public FlushResult? LastResult { get; private set; }

    /// <summary>Stripe's refusal of our credentials, while it lasts.</summary>
    public string? ConfigurationError { get; private set; }

    /// <summary>When <see cref="ConfigurationError"/> was seen.</summary>
    public DateTimeOffset? ConfigurationErrorAt { get; private set; }

    /// <summary>The backlog as seen at the end of the last full flush.</summary>
    public FlushBacklog? Backlog { get; private set; }

    internal void BacklogSeen(FlushBacklog backlog)
    {
        lock (_gate)
        {
            Backlog = backlog;
        }
    }

    /// <summary>Background cycles that threw.</summary>
    public long FailedCycles { get; private set; }

    internal void Completed(DateTimeOffset at, FlushResult result)
    {
        lock (_gate)
        {
            LastCompletedAt = at;
            LastResult = result;
        }
    }

    internal void ConfigurationFailed(string error, DateTimeOffset at)
    {
        lock (_gate)
        {
            ConfigurationError = error;
            ConfigurationErrorAt = at;
        }
    }

    internal void ConfigurationOk()
    {
        lock (_gate)
        {
            ConfigurationError = null;
            ConfigurationErrorAt = null;
        }
    }

    internal void CycleFailed()
    {
        lock (_gate)
        {
            FailedCycles++;
        }
    }
}
