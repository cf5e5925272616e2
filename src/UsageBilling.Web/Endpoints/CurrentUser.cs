using System.Security.Claims;

namespace UsageBilling.Web.Endpoints;

/// <summary>Reads the signed-in account's id from the Identity cookie's claims.</summary>
internal static class CurrentUser
{
    public static Guid? Id(ClaimsPrincipal user) =>
        Guid.TryParse(user.FindFirstValue(ClaimTypes.NameIdentifier), out var id) ? id : null;

    public static Guid RequiredId(ClaimsPrincipal user) =>
        Id(user) ?? throw new InvalidOperationException("The endpoint requires an authenticated user.");
}
