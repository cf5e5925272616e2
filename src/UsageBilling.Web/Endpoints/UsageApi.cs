using System.Security.Claims;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using UsageBilling.Summaries;
using UsageBilling.Web.Billing;
using UsageBilling.Web.Data;

namespace UsageBilling.Web.Endpoints;

/// <summary>The JSON API under <c>/api</c>: the caller's usage and subscription, and the billable assistant.</summary>
internal static class UsageApi
{
    /// <summary>A message to the assistant.</summary>
    /// <param name="Message">The text.</param>
    /// <param name="RequestId">The client's id for this request; a retry with the same id records once. Defaults to the <c>Idempotency-Key</c> header.</param>
    public sealed record AssistantRequest(string? Message, string? RequestId);

    /// <summary>The assistant's answer.</summary>
    /// <param name="Reply">The answer.</param>
    public sealed record AssistantResponse(string Reply);

    /// <summary>One subscription item as the API shows it.</summary>
    public sealed record SubscriptionItemDto(string Id, string SubscriptionId, string PriceId, string? Meter, string Status, DateTimeOffset CurrentPeriodStart, DateTimeOffset CurrentPeriodEnd);

    /// <summary>The account's plan and items.</summary>
    public sealed record SubscriptionDto(Guid UserId, string? StripeCustomerId, string? PlanId, IReadOnlyList<SubscriptionItemDto> Items);

    public static void MapUsageApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api").RequireAuthorization();
        api.MapGet("/usage", (ClaimsPrincipal user, IUsageSummaryService summaries, CancellationToken ct) =>
            GetUsageAsync(CurrentUser.RequiredId(user), user, summaries, ct));
        api.MapGet("/users/{userId:guid}/usage", (Guid userId, ClaimsPrincipal user, IUsageSummaryService summaries, CancellationToken ct) =>
            GetUsageAsync(userId, user, summaries, ct));
        api.MapGet("/users/{userId:guid}/subscription", GetSubscriptionAsync);
        api.MapPost("/assistant/messages", SendAsync);
    }

    /// <summary>Another account's id answers 404, exactly like an id that does not exist.</summary>
    private static async Task<Results<Ok<UsageSummary>, NotFound>> GetUsageAsync(Guid userId, ClaimsPrincipal user, IUsageSummaryService summaries, CancellationToken ct)
    {
        if (CurrentUser.Id(user) != userId)
        {
            return TypedResults.NotFound();
        }

        return TypedResults.Ok(await summaries.GetCurrentPeriodAsync(userId, ct));
    }

    private static async Task<Results<Ok<SubscriptionDto>, NotFound>> GetSubscriptionAsync(Guid userId, ClaimsPrincipal user, AppDbContext db, CancellationToken ct)
    {
        if (CurrentUser.Id(user) != userId)
        {
            return TypedResults.NotFound();
        }

        var customer = await db.BillingCustomers.AsNoTracking().FirstOrDefaultAsync(c => c.UserId == userId, ct);
        var items = await db.SubscriptionItems.AsNoTracking().Where(i => i.UserId == userId)
            .Select(i => new SubscriptionItemDto(i.Id, i.SubscriptionId, i.PriceId, i.Meter, i.Status, i.CurrentPeriodStart, i.CurrentPeriodEnd))
            .ToListAsync(ct);
        return TypedResults.Ok(new SubscriptionDto(userId, customer?.StripeCustomerId, customer?.PlanId, items));
    }

    private static async Task<Results<Ok<AssistantResponse>, ValidationProblem, ProblemHttpResult>> SendAsync(
        AssistantRequest request, HttpContext http, ClaimsPrincipal user, AssistantService assistant, CancellationToken ct)
    {
        var requestId = request.RequestId ?? http.Request.Headers["Idempotency-Key"].ToString();
        if (string.IsNullOrWhiteSpace(requestId))
        {
            return TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["requestId"] = ["A requestId (or an Idempotency-Key header) is required so that a retry records once."] });
        }

        var outcome = await assistant.SendAsync(CurrentUser.RequiredId(user), request.Message, requestId, ct);
        if (outcome.LimitReached)
        {
            return TypedResults.Problem(statusCode: StatusCodes.Status429TooManyRequests, title: "Usage limit reached", detail: outcome.Error, type: "https://usagebilling.dev/problems/usage-limit");
        }

        if (outcome.Error is { } error)
        {
            return TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["message"] = [error] });
        }

        return TypedResults.Ok(new AssistantResponse(outcome.Reply!));
    }
}
