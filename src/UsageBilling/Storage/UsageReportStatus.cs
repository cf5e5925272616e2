namespace UsageBilling.Storage;

/// <summary>Where a usage report stands with Stripe.</summary>
public enum UsageReportStatus
{
    /// <summary>Claimed, waiting to be sent or retried.</summary>
    Pending,

    /// <summary>Stripe acknowledged it (200, or "already exists with identifier").</summary>
    Sent,

    /// <summary>Permanently refused or never sendable; see the report's last error.</summary>
    Dead,

    /// <summary>Attempted long ago and never acknowledged: Stripe's dedup window may have passed, so it is not resent blindly.</summary>
    NeedsReview,

    /// <summary>Cancelled on Stripe by a meter event adjustment (a correction); its remaining usage went into a new report.</summary>
    Canceled,
}
